#!/usr/bin/env node
// An SMSC nobody on this project wrote: node-smpp (npm `smpp`) in server mode, for the interop
// tests (tests/interop.rs). It accepts binds with the given credentials, acknowledges every
// submit_sm with a hex message id (leading zeros), sends a delivery receipt for each one that
// asks for it (decimal id in the text, hex id in receipted_message_id: a common vendor mix),
// and records every submit_sm as node-smpp itself decoded it to --out (JSON array).
//
// Usage: node node-smsc.js --port 2775 --out received.json [--system-id otpgw --password secret]
'use strict';

const fs = require('fs');
const smpp = require('smpp');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(arg('port', '2775'));
const out = arg('out', 'node-smsc.json');
const systemId = arg('system-id', 'otpgw');
const password = arg('password', 'secret');

const received = [];
let nextId = 0x00b8be00;

function save() {
  // Written whole each time through a rename, so a reader never sees half a file.
  fs.writeFileSync(`${out}.tmp`, JSON.stringify(received, null, 1));
  fs.renameSync(`${out}.tmp`, out);
}

// Concatenation information element (8- or 16-bit reference) from node-smpp's UDH list.
function concatOf(udhList) {
  for (const ie of udhList || []) {
    if (ie[0] === 0x00 && ie[1] === 3) return { reference: ie[2], total: ie[3], sequence: ie[4] };
    if (ie[0] === 0x08 && ie[1] === 4) {
      return { reference: ie.readUInt16BE(2), total: ie[4], sequence: ie[5] };
    }
  }
  return null;
}

const server = smpp.createServer({}, (session) => {
  session.on('error', () => {});
  for (const kind of ['bind_transceiver', 'bind_transmitter']) {
    session.on(kind, (pdu) => {
      if (pdu.system_id !== systemId || pdu.password !== password) {
        session.send(pdu.response({ command_status: 0x0d }));
        session.close();
        return;
      }
      session.send(pdu.response({ system_id: 'node-smsc' }));
    });
  }
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.close();
  });
  session.on('submit_sm', (pdu) => {
    const number = nextId++;
    const id = number.toString(16).toUpperCase().padStart(10, '0');
    const sm = pdu.short_message || {};
    received.push({
      messageId: id,
      source: pdu.source_addr,
      sourceTon: pdu.source_addr_ton,
      sourceNpi: pdu.source_addr_npi,
      destination: pdu.destination_addr,
      destTon: pdu.dest_addr_ton,
      destNpi: pdu.dest_addr_npi,
      esmClass: pdu.esm_class,
      dataCoding: pdu.data_coding,
      registeredDelivery: pdu.registered_delivery,
      validityPeriod: pdu.validity_period,
      text: typeof sm.message === 'string' ? sm.message : null,
      concat: concatOf(sm.udh),
    });
    save();
    session.send(pdu.response({ message_id: id }));
    if (pdu.registered_delivery & 0x01) {
      setTimeout(() => {
        session.deliver_sm({
          source_addr: pdu.destination_addr,
          destination_addr: pdu.source_addr,
          esm_class: 0x04,
          short_message:
            `id:${number} sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000 text:`,
          receipted_message_id: id,
          message_state: 2,
        });
      }, 20);
    }
  });
});

server.on('error', (e) => {
  console.error(`node-smsc: ${e.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  save();
  console.log('READY');
});
process.on('SIGTERM', () => process.exit(0));
