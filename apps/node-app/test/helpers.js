'use strict'

const http = require('node:http')
const net = require('node:net')
const { Writable } = require('node:stream')
const { buildApp } = require('../src/app')
const { parseConfig } = require('../src/config')

/** Collects the app's JSON log lines. */
class LogCollector extends Writable {
  constructor () {
    super()
    this.lines = []
  }

  _write (chunk, encoding, callback) {
    for (const line of chunk.toString().split('\n')) {
      if (line.trim() !== '') this.lines.push(JSON.parse(line))
    }
    callback()
  }
}

function testConfig (env = {}) {
  return parseConfig({ SLEEP_MAX_MS: '0', ...env })
}

/** Serves a fresh app on a loopback port until the test ends. */
async function startApp (t, env = {}) {
  const logs = new LogCollector()
  const app = buildApp(testConfig(env), { hostname: 'test-host', logStream: logs })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.after(async () => {
    app.server.closeAllConnections()
    if (!app.lifecycle.closing) await app.close()
  })
  return { app, port: app.server.address().port, logs }
}

/** One request on a fresh connection; resolves { status, headers, body }. */
function request (port, method, path, { body, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * A keep-alive client on one raw socket that never retries or reconnects, so every reset or EOF
 * the server causes is seen. It parses just enough HTTP/1.1: Content-Length and chunked bodies.
 */
class RawClient {
  static connect (port) {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1')
      socket.once('connect', () => resolve(new RawClient(socket)))
      socket.once('error', reject)
    })
  }

  constructor (socket) {
    this.socket = socket
    this.buffer = Buffer.alloc(0)
    this.ended = false
    this.error = null
    this.waiter = null
    socket.on('data', (d) => { this.buffer = Buffer.concat([this.buffer, d]); this.wake() })
    socket.on('end', () => { this.ended = true; this.wake() })
    socket.on('error', (err) => { this.error = err; this.wake() })
    socket.on('close', () => { this.ended = true; this.wake() })
  }

  wake () {
    if (this.waiter) this.waiter()
  }

  // Resolves when more data, EOF or an error arrives.
  more () {
    return new Promise((resolve) => { this.waiter = () => { this.waiter = null; resolve() } })
  }

  async readUntil (parse) {
    for (;;) {
      const result = parse()
      if (result !== undefined) return result
      if (this.error) throw this.error
      if (this.ended) throw new Error(`EOF after ${this.buffer.length} bytes of a response`)
      await this.more()
    }
  }

  /** Sends one request and resolves { status, headers, body } of its complete response. */
  async roundTrip (method, path, body = '') {
    let req = `${method} ${path} HTTP/1.1\r\nHost: node-app\r\n`
    req += method === 'POST' ? `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}` : '\r\n'
    this.socket.write(req)
    const head = await this.readUntil(() => {
      const end = this.buffer.indexOf('\r\n\r\n')
      if (end < 0) return undefined
      const [statusLine, ...lines] = this.buffer.subarray(0, end).toString().split('\r\n')
      this.buffer = this.buffer.subarray(end + 4)
      const headers = {}
      for (const line of lines) {
        const i = line.indexOf(':')
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
      }
      return { status: Number(statusLine.split(' ')[1]), headers }
    })
    const chunked = /chunked/i.test(head.headers['transfer-encoding'] ?? '')
    const responseBody = chunked ? await this.readChunked() : await this.readLength(Number(head.headers['content-length'] ?? 0))
    return { ...head, body: responseBody }
  }

  readLength (length) {
    return this.readUntil(() => {
      if (this.buffer.length < length) return undefined
      const out = this.buffer.subarray(0, length).toString()
      this.buffer = this.buffer.subarray(length)
      return out
    })
  }

  async readChunked () {
    let out = ''
    for (;;) {
      const size = await this.readUntil(() => {
        const end = this.buffer.indexOf('\r\n')
        if (end < 0) return undefined
        const n = parseInt(this.buffer.subarray(0, end).toString(), 16)
        this.buffer = this.buffer.subarray(end + 2)
        return n
      })
      const data = await this.readLength(size + 2) // chunk and its CRLF
      if (size === 0) return out
      out += data.slice(0, size)
    }
  }

  /** Resolves true when the server closes the connection within ms. */
  async closedByServer (ms) {
    const timeout = new Promise((resolve) => setTimeout(resolve, ms, false))
    const closed = this.readUntil(() => undefined).then(() => false, () => this.ended && !this.error)
    return Promise.race([closed, timeout])
  }

  destroy () {
    this.socket.destroy()
  }
}

module.exports = { startApp, request, RawClient, testConfig, LogCollector }
