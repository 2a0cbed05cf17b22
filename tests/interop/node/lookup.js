// An ESME written with the npm `smpp` package, used as its users use it: bind_transceiver
// with the library's defaults (it announces interface_version 0x50), submit_sm for every
// number, every receipt matched to its submission by receipted_message_id (TLV 0x001E).
// Prints one JSON object on stdout; the interop test checks it.
//
//   node lookup.js PORT SYSTEM_ID PASSWORD NUMBER...
'use strict';
const smpp = require('smpp');

const [port, systemId, password, ...numbers] = process.argv.slice(2);
const out = {bind: null, submits: [], receipts: [], unmatched: [], error: null};
const byId = new Map();  // message_id -> index in out.submits
let pending = numbers.length;

const session = smpp.connect({url: `smpp://127.0.0.1:${port}`});
const timer = setTimeout(() => finish('timed out waiting for receipts'), 30000);

function finish(error) {
  clearTimeout(timer);
  if (error && !out.error) out.error = error;
  process.stdout.write(JSON.stringify(out) + '\n');
  if (out.bind && out.bind.command_status === 0) {
    session.unbind(() => session.close());
    setTimeout(() => process.exit(0), 2000).unref();
  } else {
    session.close();
  }
}

session.on('error', (e) => finish(String(e)));

session.on('deliver_sm', (pdu) => {
  session.send(pdu.response());
  const id = pdu.receipted_message_id;
  const sm = pdu.short_message;
  const receipt = {
    receipted_message_id: id,
    text: sm && typeof sm === 'object' && 'message' in sm ? String(sm.message) : String(sm),
    data_coding: pdu.data_coding,
    esm_class: pdu.esm_class,
    destination_addr: pdu.destination_addr,
    message_state: pdu.message_state,
  };
  if (!byId.has(id)) {
    out.unmatched.push(receipt);
    return;
  }
  receipt.number = out.submits[byId.get(id)].number;
  out.receipts.push(receipt);
  if (out.receipts.length === numbers.length) finish(null);
});

// Only what the account needs: everything else, interface_version included, is the default.
session.bind_transceiver({system_id: systemId, password: password, system_type: 'HLR'}, (pdu) => {
  out.bind = {command_status: pdu.command_status, system_id: pdu.system_id,
              sc_interface_version: pdu.sc_interface_version === undefined ? null : pdu.sc_interface_version};
  if (pdu.command_status !== 0) return finish('bind refused');
  numbers.forEach((number) => {
    session.submit_sm({destination_addr: number, registered_delivery: 1, short_message: 'hlr'}, (resp) => {
      out.submits.push({number: number, command_status: resp.command_status, message_id: resp.message_id});
      byId.set(resp.message_id, out.submits.length - 1);
      if (resp.command_status !== 0 && --pending === 0) finish('no lookup accepted');
    });
  });
});
