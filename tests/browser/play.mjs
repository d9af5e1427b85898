// Plays a presentation in a real browser for the end-to-end tests: headless Chromium driven by
// playwright-core, with Shaka Player, dash.js or hls.js, all pinned in package.json.
//
//   node play.mjs '{"player": "shaka" | "dashjs" | "hlsjs", "manifest": "http://...", ...}'
//
// Serves a page and the player's script on a loopback port of its own (the manifest comes from
// another origin, as a site embedding a player fetches it), plays the manifest muted from the
// start and waits until the video ends, the player reports a fatal error or `timeoutMs` passes.
// Options: timeoutMs (default 30000), chromium (the browser's path, default /usr/bin/chromium).
// Prints one JSON line: {"player", "played": the furthest position reached in seconds,
// "duration", "buffered": [[start, end]...], "ended" (the element's, or the player's own end of
// playback), "timed_out", "audio_tracks": [{"language", "label"}], "audio_languages",
// "error": null or what went wrong, "console": the page's warnings and errors}.
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const here = path.dirname(fileURLToPath(import.meta.url))
const options = JSON.parse(process.argv[2] ?? '{}')
const timeoutMs = Number(options.timeoutMs ?? 30000)
const executablePath = options.chromium ?? '/usr/bin/chromium'

const PLAYER_SCRIPTS = {
  shaka: 'node_modules/shaka-player/dist/shaka-player.compiled.js',
  dashjs: 'node_modules/dashjs/dist/modern/umd/dash.all.min.js',
  hlsjs: 'node_modules/hls.js/dist/hls.min.js',
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>vod player</title></head>
<body><video id="video" muted playsinline width="640" height="360"></video>
<script src="/player.js"></script></body></html>`

const report = (result) => process.stdout.write(`${JSON.stringify(result)}\n`)

function serve(playerScript) {
  const script = fs.readFileSync(path.join(here, playerScript))
  const server = http.createServer((req, res) => {
    if (req.url === '/favicon.ico') {
      res.writeHead(204)
      res.end()
    } else if (req.url === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
      res.end(PAGE)
    } else if (req.url === '/player.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' })
      res.end(script)
    } else {
      res.writeHead(404)
      res.end()
    }
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })
}

// Runs in the page: plays `manifest` with `player` and settles with what happened.
async function playInPage({ player, manifest, timeoutMs }) {
  const video = document.getElementById('video')
  video.muted = true
  let played = 0
  let fatal = null
  let audioTracks = () => []
  const describe = (error) => {
    if (error === null || error === undefined) return 'unknown error'
    if (typeof error === 'string') return error
    if (error.message) return error.message
    try {
      return JSON.stringify(error)
    } catch {
      return String(error)
    }
  }
  const finished = new Promise((resolve) => {
    video.addEventListener('timeupdate', () => {
      played = Math.max(played, video.currentTime)
    })
    video.addEventListener('ended', () => resolve('ended'))
    window.__end = () => resolve('ended')
    video.addEventListener('error', () => {
      fatal = fatal ?? `media element error ${video.error?.code}: ${video.error?.message}`
      resolve('error')
    })
    window.__fail = (error) => {
      fatal = fatal ?? describe(error)
      resolve('error')
    }
    setTimeout(() => resolve('timeout'), timeoutMs)
  })
  const fail = (error) => window.__fail(error)

  // Runs beside the wait, so that a player that never settles still ends at the deadline.
  const start = async () => {
    if (player === 'shaka') {
      shaka.polyfill.installAll()
      if (!shaka.Player.isBrowserSupported()) throw new Error('Shaka Player: browser not supported')
      const shakaPlayer = new shaka.Player()
      await shakaPlayer.attach(video)
      shakaPlayer.addEventListener('error', (event) => {
        const error = event.detail
        if (!error || error.severity === shaka.util.Error.Severity.CRITICAL) {
          fail(`Shaka Player error ${error?.code}: ${describe(error?.data)}`)
        }
      })
      await shakaPlayer.load(manifest).catch((error) => {
        throw new Error(`Shaka Player error ${error.code}: ${describe(error.data)}`)
      })
      audioTracks = () =>
        shakaPlayer.getAudioTracks().map((track) => ({ language: track.language, label: track.label }))
    } else if (player === 'dashjs') {
      const dashPlayer = dashjs.MediaPlayer().create()
      dashPlayer.on(dashjs.MediaPlayer.events.ERROR, (event) => {
        fail(`dash.js error ${event.error?.code}: ${event.error?.message ?? describe(event.error)}`)
      })
      const streamReady = new Promise((resolve) =>
        dashPlayer.on(dashjs.MediaPlayer.events.STREAM_INITIALIZED, resolve),
      )
      // dash.js ends playback itself at the end of the last period and may pause the element a
      // hair before its end, where the element never fires its own `ended`.
      dashPlayer.on(dashjs.MediaPlayer.events.PLAYBACK_ENDED, () => window.__end())
      dashPlayer.initialize(video, manifest, false)
      await Promise.race([streamReady, finished])
      audioTracks = () =>
        dashPlayer.getTracksFor('audio').map((track) => ({
          language: track.lang ?? null,
          label: track.labels?.[0]?.text ?? null,
        }))
    } else if (player === 'hlsjs') {
      if (!Hls.isSupported()) throw new Error('hls.js: Media Source Extensions are not supported')
      const hls = new Hls()
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (data.fatal) fail(`hls.js error ${data.type}/${data.details}: ${describe(data.error)}`)
      })
      const parsed = new Promise((resolve) => hls.on(Hls.Events.MANIFEST_PARSED, resolve))
      hls.loadSource(manifest)
      hls.attachMedia(video)
      await Promise.race([parsed, finished])
      audioTracks = () => hls.audioTracks.map((track) => ({ language: track.lang ?? null, label: track.name ?? null }))
    } else {
      throw new Error(`unknown player ${player}: use shaka, dashjs or hlsjs`)
    }
    await video.play()
  }
  start().catch(fail)
  const outcome = await finished
  played = Math.max(played, video.currentTime)
  let tracks = []
  try {
    tracks = audioTracks()
  } catch (error) {
    fatal = fatal ?? `listing the audio tracks failed: ${describe(error)}`
  }
  return {
    played,
    duration: Number.isFinite(video.duration) ? video.duration : null,
    buffered: Array.from({ length: video.buffered.length }, (_, i) => [
      video.buffered.start(i),
      video.buffered.end(i),
    ]),
    ended: outcome === 'ended' || video.ended,
    timed_out: outcome === 'timeout',
    audio_tracks: tracks,
    audio_languages: tracks.map((track) => track.language),
    error: fatal,
  }
}

async function main() {
  const script = PLAYER_SCRIPTS[options.player]
  if (!script) throw new Error(`unknown player ${options.player}: use shaka, dashjs or hlsjs`)
  if (!options.manifest) throw new Error('no manifest to play')
  // Launching or driving the browser can hang too: the whole run is bounded.
  const guard = setTimeout(() => {
    report({ player: options.player, error: `the browser did not finish within ${timeoutMs + 30000} ms` })
    process.exit(1)
  }, timeoutMs + 30000)
  const server = await serve(script)
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required'],
  })
  try {
    const page = await browser.newPage()
    const messages = []
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') {
        messages.push(`${message.type()}: ${message.text()}`)
      }
    })
    page.on('pageerror', (error) => messages.push(`pageerror: ${error.message}`))
    await page.goto(`http://127.0.0.1:${server.address().port}/`)
    const result = await page.evaluate(playInPage, {
      player: options.player,
      manifest: options.manifest,
      timeoutMs,
    })
    report({ player: options.player, ...result, console: messages })
  } finally {
    await browser.close()
    server.close()
    clearTimeout(guard)
  }
}

main().catch((error) => {
  report({ player: options.player ?? null, error: `the browser could not play: ${error.message}` })
  process.exit(1)
})
