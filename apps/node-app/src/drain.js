'use strict'

// Why the drain is hand-written instead of relying on fastify.close(): since Node 19,
// server.close() also destroys every idle keep-alive socket at once (and so does Fastify's
// forceCloseConnections: 'idle'). A client writing its next request on such a socket at that
// instant gets EOF or a reset, which a non-retrying client (or any POST) counts as a failure.
// Instead, once draining:
//   - every response carries "Connection: close" (app.js), so a busy keep-alive socket ends
//     cleanly right after a complete response;
//   - a socket is destroyed only when it has been idle for IDLE_CLOSE_AFTER_MS and no byte of a
//     new request has been read from it; the check runs in the event loop's check phase, right
//     after the poll phase has parsed any request that had arrived.
// Back-to-back clients therefore always get a Connection: close response; only a client that was
// quiet for IDLE_CLOSE_AFTER_MS and sends within microseconds of the close can still lose a race.

const http = require('node:http')

const IDLE_CLOSE_AFTER_MS = 1000
const REAP_EVERY_MS = 25

// server.close() must only stop accepting: the tracker decides when idle sockets close.
class DrainingServer extends http.Server {
  closeIdleConnections () {}
}

class ConnectionTracker {
  constructor () {
    this.sockets = new Map() // socket -> { active, idleSince, bytesAtIdle }
    this.timer = null
  }

  attach (server) {
    server.on('connection', (socket) => {
      this.sockets.set(socket, { active: 0, idleSince: Date.now(), bytesAtIdle: 0 })
      socket.once('close', () => this.sockets.delete(socket))
    })
    server.prependListener('request', (req, res) => {
      const state = this.sockets.get(req.socket)
      if (!state) return
      state.active++
      res.once('close', () => {
        state.active--
        if (state.active === 0) {
          state.idleSince = Date.now()
          state.bytesAtIdle = req.socket.bytesRead
        }
      })
    })
  }

  // Starts closing quiet sockets; it stops by itself when none is left.
  startReaping () {
    if (this.timer) return
    this.timer = setInterval(() => setImmediate(() => this.closeQuiet(IDLE_CLOSE_AFTER_MS)), REAP_EVERY_MS)
  }

  stopReaping () {
    clearInterval(this.timer)
    this.timer = null
  }

  closeQuiet (quietForMs) {
    const now = Date.now()
    for (const [socket, state] of this.sockets) {
      if (state.active === 0 && now - state.idleSince >= quietForMs && socket.bytesRead === state.bytesAtIdle) {
        socket.destroy()
      }
    }
    if (this.sockets.size === 0) this.stopReaping()
  }

  get size () {
    return this.sockets.size
  }
}

module.exports = { DrainingServer, ConnectionTracker, IDLE_CLOSE_AFTER_MS }
