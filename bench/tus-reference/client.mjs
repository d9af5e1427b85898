// The one tus client of the upload benchmark: tus-js-client under Node, uploading files at
// once to one endpoint, as a user of either server would.
//
//   TUS_CLIENT_HEADERS='{"Authorization": "Bearer ..."}' \
//   node client.mjs '{"endpoint": "...", "files": ["...", ...], "chunkSize": N}'
//
// The headers sent with every request come in the environment, not on the command line that
// every user of the machine can read: they carry a key.
// Prints one JSON line at the end: {"event": "success", "seconds", "cpuSeconds", "uploads":
// [{"file", "url", "videoId"}]}, where seconds run from the first request to the last answer
// and cpuSeconds is this process's user and system time; or {"event": "error", "message"}.
import fs from 'node:fs'
import * as tus from 'tus-js-client'

const options = JSON.parse(process.argv[2] ?? '{}')
const headers = JSON.parse(process.env.TUS_CLIENT_HEADERS || '{}')
const report = (event) => process.stdout.write(`${JSON.stringify(event)}\n`)

function upload(file) {
  let videoId = null
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(fs.createReadStream(file), {
      endpoint: options.endpoint,
      chunkSize: options.chunkSize ?? Number.POSITIVE_INFINITY,
      headers,
      metadata: { filename: file.split('/').pop() },
      // A benchmark wants a failure, not a retried one.
      retryDelays: [],
      onAfterResponse(_req, res) {
        videoId = res.getHeader('Video-Id') || videoId
      },
      onError: reject,
      onSuccess: () => resolve({ file, url: upload.url, videoId }),
    })
    upload.start()
  })
}

async function main() {
  const started = process.hrtime.bigint()
  const uploads = await Promise.all(options.files.map(upload))
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  const { user, system } = process.cpuUsage()
  report({ event: 'success', seconds, cpuSeconds: (user + system) / 1e6, uploads })
}

main().catch((error) => {
  report({ event: 'error', message: String(error) })
  process.exit(1)
})
