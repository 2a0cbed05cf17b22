"""(in progress)"""
from aiohttp import web


def routes(r: web.UrlDispatcher) -> None:
    pass
