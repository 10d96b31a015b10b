'use strict'
// The second sender of bench/webhooks.py: autocannon sends every pre-signed event of
// requests.tsv exactly once (amount = events; each request takes the next line) over
// CONNECTIONS keep-alive connections, and records each answer's own latency.
//
//   node autocannon_webhooks.js URL REQUESTS_TSV CONNECTIONS OUT_JSON [RATE]
//
// RATE (events per second over all connections; 0 or absent = as fast as answers come) paces
// the sending with autocannon's overallRate.
//
// OUT_JSON gets {events, ok, bad, errors, span_us, latencies_ms: [...2xx answers...]}.
const fs = require('fs')
const autocannon = require('autocannon')

const [url, file, connArg, out, rateArg] = process.argv.slice(2)
const rate = parseFloat(rateArg || '0')
const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0)
const connections = Math.min(parseInt(connArg, 10), lines.length)
const path = new URL(url).pathname
let next = 0

const latencies = []
let ok = 0
let bad = 0
let errors = 0
let lastNs = 0n
// Set when the first request is handed to autocannon, as the wrk script does (not at start:
// node's start-up and the connections' set-up are no part of the server's rate).
let startNs = 0n

const instance = autocannon({
  url,
  connections,
  amount: lines.length,
  timeout: 30,
  ...(rate > 0 ? { overallRate: rate } : {}),
  requests: [{
    setupRequest: (req) => {
      if (startNs === 0n) startNs = process.hrtime.bigint()
      const line = lines[next++]
      const tab = line.indexOf('\t')
      return {
        ...req,
        method: 'POST',
        path,
        headers: { 'stripe-signature': line.slice(0, tab), 'content-type': 'application/json' },
        body: line.slice(tab + 1)
      }
    }
  }]
}, (err) => {
  if (err) {
    console.error(err)
    process.exit(1)
  }
  const result = {
    events: lines.length,
    taken: next,
    ok,
    bad,
    errors,
    span_us: Number((lastNs - startNs) / 1000n),
    latencies_ms: latencies
  }
  fs.writeFileSync(out, JSON.stringify(result))
})

instance.on('response', (client, statusCode, resBytes, responseTime) => {
  lastNs = process.hrtime.bigint()
  if (statusCode >= 200 && statusCode < 300) {
    ok++
    latencies.push(responseTime)
  } else {
    bad++
  }
})
instance.on('reqError', () => { errors++ })
