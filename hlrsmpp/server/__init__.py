"""The asyncio adapters: the SMPP listener, receipt delivery, the HTTP app; ``app.Server``
wires them to the store, the accounts and the resolver."""
