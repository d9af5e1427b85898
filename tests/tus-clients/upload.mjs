// Drives tus-js-client, the tus project's own JavaScript client, from the end-to-end tests.
//
//   node upload.mjs '{"endpoint": "...", "file": "...", "mode": "new" | "resume", ...}'
//
// Options: chunkSize (bytes), parallel (parallel uploads through concatenation), deferred
// (stream the file without announcing its length), overridePatch (send PATCH as POST with
// X-HTTP-Method-Override), storage (a file remembering upload URLs, for resuming in a later
// process), killAfterBytes (the process kills itself once the server has accepted that many
// bytes), metadata. Prints one JSON line per event: "killing" before a kill, "success" at the
// end, with the upload URL, the video id from the creation response, and the offset of the
// first PATCH this process sent. VOD_API_KEY, when set, is sent as the bearer credential.
import fs from 'node:fs'
import { Readable } from 'node:stream'
import * as tus from 'tus-js-client'

const options = JSON.parse(process.argv[2] ?? '{}')
const report = (event) => process.stdout.write(`${JSON.stringify(event)}\n`)

async function main() {
  let videoId = null
  let firstPatchOffset = null
  let upload
  const finished = new Promise((resolve, reject) => {
    const uploadOptions = {
      endpoint: options.endpoint,
      chunkSize: options.chunkSize ?? Number.POSITIVE_INFINITY,
      metadata: options.metadata ?? {},
      headers: process.env.VOD_API_KEY ? { Authorization: `Bearer ${process.env.VOD_API_KEY}` } : {},
      retryDelays: [0, 250, 500, 1000, 2000],
      overridePatchMethod: Boolean(options.overridePatch),
      removeFingerprintOnSuccess: false,
      onBeforeRequest(req) {
        const offset = req.getHeader('Upload-Offset')
        if (firstPatchOffset === null && offset !== undefined && offset !== null) {
          firstPatchOffset = Number(offset)
        }
      },
      onAfterResponse(_req, res) {
        const id = res.getHeader('Video-Id')
        if (id) videoId = id
      },
      onChunkComplete(_size, accepted) {
        if (options.killAfterBytes && accepted >= options.killAfterBytes) {
          report({ event: 'killing', url: upload.url, accepted })
          process.kill(process.pid, 'SIGKILL')
        }
      },
      onError: reject,
      onSuccess: resolve,
    }
    let input
    if (options.deferred) {
      uploadOptions.uploadLengthDeferred = true
      input = Readable.from(fs.createReadStream(options.file))
    } else {
      input = fs.createReadStream(options.file)
    }
    if (options.parallel) uploadOptions.parallelUploads = options.parallel
    if (options.storage) uploadOptions.urlStorage = new tus.FileUrlStorage(options.storage)
    upload = new tus.Upload(input, uploadOptions)
  })
  if (options.mode === 'resume') {
    const previous = await upload.findPreviousUploads()
    if (previous.length === 0) throw new Error('no previous upload of this file to resume')
    upload.resumeFromPreviousUpload(previous[0])
  }
  upload.start()
  await finished
  report({ event: 'success', url: upload.url, videoId, firstPatchOffset })
}

main().catch((error) => {
  report({ event: 'error', message: String(error) })
  process.exit(1)
})
