// The reference tus server of the upload benchmark: @tus/server with @tus/file-store, as their
// README sets them up, on 127.0.0.1 at a port the system picks, storing under a directory.
//
//   node server.mjs DIRECTORY
//
// Prints one JSON line once it listens: {"event": "listening", "port": N}.
import { FileStore } from '@tus/file-store'
import { Server } from '@tus/server'

const directory = process.argv[2]
if (!directory) {
  console.error('usage: node server.mjs DIRECTORY')
  process.exit(2)
}

const server = new Server({ path: '/files', datastore: new FileStore({ directory }) })
const listener = server.listen({ host: '127.0.0.1', port: 0 }, () => {
  process.stdout.write(`${JSON.stringify({ event: 'listening', port: listener.address().port })}\n`)
})
process.on('SIGTERM', () => listener.close(() => process.exit(0)))
