'use strict'

const client = require('prom-client')

// Names, labels and buckets are shared with go-app and the SLO rules; buckets reach the 120 s stream.
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]

function createMetrics (appName, version) {
  const registry = new client.Registry()
  client.collectDefaultMetrics({ register: registry })
  const metrics = {
    registry,
    requests: new client.Counter({
      name: 'http_requests_total',
      help: 'HTTP requests by method, route and status code.',
      labelNames: ['method', 'route', 'code'],
      registers: [registry]
    }),
    duration: new client.Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request duration by method and route.',
      labelNames: ['method', 'route'],
      buckets: DURATION_BUCKETS,
      registers: [registry]
    }),
    inFlight: new client.Gauge({
      name: 'http_requests_in_flight',
      help: 'HTTP requests being served.',
      registers: [registry]
    })
  }
  new client.Gauge({
    name: 'app_build_info',
    help: 'Always 1; labels carry the app name and version.',
    labelNames: ['app', 'version'],
    registers: [registry]
  }).set({ app: appName, version }, 1)
  return metrics
}

module.exports = { createMetrics, DURATION_BUCKETS }
