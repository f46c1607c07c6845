// The unmodified E2B JS SDK (npm `e2b`, pinned in package.json) against a
// bhatti daemon, as crates/server/tests/vm/e2b.rs runs it (`node --test`).
//
// Environment (set by the Rust trial):
//   E2B_API_KEY           a bhatti API key (user alice)
//   E2B_API_URL           http://127.0.0.1:PORT/e2b
//   E2B_SANDBOX_URL       http://127.0.0.1:PORT/e2b
//   BHATTI_E2B_OTHER_KEY  another user's key (isolation)
//
// Every test is skipped unless both E2B URLs point at loopback: the SDK's
// default is E2B's cloud, and these tests never send a packet off the host.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { CommandExitError, FileType, NotFoundError, Sandbox } from 'e2b'

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]'])
const onLoopback = (url) => Boolean(url) && LOOPBACK.has(new URL(url).hostname)
const skip =
  onLoopback(process.env.E2B_API_URL) && onLoopback(process.env.E2B_SANDBOX_URL)
    ? false
    : 'E2B_API_URL and E2B_SANDBOX_URL must point at a bhatti daemon on loopback'
// Long enough for a loaded host, short enough that a crashed run leaves
// nothing for long.
const TIMEOUT_MS = 600_000

/** Polls `check` until it returns a truthy value, for at most `limitMs`. */
async function eventually(check, limitMs = 120_000) {
  const end = Date.now() + limitMs
  for (;;) {
    const v = await check()
    if (v) return v
    if (Date.now() > end) throw new Error(`condition not met within ${limitMs} ms`)
    await new Promise((r) => setTimeout(r, 500))
  }
}

const pids = async (sbx) => (await sbx.commands.list()).map((p) => p.pid)

describe('e2b JS SDK', { skip }, () => {
  let sbx
  before(async () => {
    sbx = await Sandbox.create({ timeoutMs: TIMEOUT_MS, metadata: { suite: 'js' } })
  })
  after(async () => {
    await sbx?.kill().catch(() => {})
  })

  test('create, info, list and timeout', async () => {
    assert.match(sbx.sandboxId, /^sb-/)
    const info = await sbx.getInfo()
    assert.equal(info.sandboxId, sbx.sandboxId)
    assert.equal(info.state, 'running')
    assert.deepEqual(info.metadata, { suite: 'js' })
    const listed = []
    const pages = Sandbox.list({ query: { metadata: { suite: 'js' } } })
    while (pages.hasNext) listed.push(...(await pages.nextItems()))
    assert.deepEqual(
      listed.map((s) => s.sandboxId),
      [sbx.sandboxId],
    )
    await sbx.setTimeout(TIMEOUT_MS)
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal((await again.commands.run('echo $((6*7))')).stdout, '42\n')
  })

  test('foreground commands stream and report exits', async () => {
    const seen = []
    const r = await sbx.commands.run('echo one; echo two >&2', {
      onStdout: (d) => seen.push(['out', d]),
      onStderr: (d) => seen.push(['err', d]),
    })
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'one\n')
    assert.equal(r.stderr, 'two\n')
    assert.deepEqual(seen.map(([k]) => k).sort(), ['err', 'out'])
    await assert.rejects(sbx.commands.run('echo bad; exit 3'), (e) => {
      assert.ok(e instanceof CommandExitError)
      assert.equal(e.exitCode, 3)
      assert.equal(e.stdout, 'bad\n')
      return true
    })
    const env = await sbx.commands.run('echo "$G"; pwd; id -un', {
      envs: { G: 'hi there' },
      cwd: '/tmp',
      user: 'user',
    })
    assert.equal(env.stdout, 'hi there\n/tmp\nuser\n')
  })

  test('background commands: stdin, list, connect, kill', async () => {
    const h = await sbx.commands.run('head -n 1', { background: true, stdin: true })
    await sbx.commands.sendStdin(h.pid, 'typed\n')
    assert.equal((await h.wait()).stdout, 'typed\n')

    const c = await sbx.commands.run('cat; echo closed', { background: true, stdin: true })
    await c.sendStdin('abc')
    await c.closeStdin()
    assert.equal((await c.wait()).stdout, 'abcclosed\n')

    const slow = await sbx.commands.run('sleep 2; echo late', { background: true })
    await slow.disconnect()
    assert.ok((await pids(sbx)).includes(slow.pid))
    const back = await sbx.commands.connect(slow.pid)
    assert.equal((await back.wait()).stdout.trim(), 'late')

    const long = await sbx.commands.run('sleep 600', { background: true })
    assert.equal(await sbx.commands.kill(long.pid), true)
    await assert.rejects(long.wait(), CommandExitError)
    await eventually(async () => !(await pids(sbx)).includes(long.pid), 30_000)
    assert.equal(await sbx.commands.kill(long.pid), false)
  })

  test('files: write, read, list, info, make_dir, rename, remove', async () => {
    await sbx.files.write('/tmp/js/a.txt', 'hello')
    assert.equal(await sbx.files.read('/tmp/js/a.txt'), 'hello')
    const bytes = new Uint8Array([0, 1, 2, 255])
    await sbx.files.write('/tmp/js/b.bin', bytes)
    const back = await sbx.files.read('/tmp/js/b.bin', { format: 'bytes' })
    assert.deepEqual([...back], [...bytes])
    await sbx.files.write([
      { path: '/tmp/js/many/1', data: 'x' },
      { path: '/tmp/js/many/2', data: 'yy' },
    ])
    const names = (await sbx.files.list('/tmp/js/many')).map((e) => e.name).sort()
    assert.deepEqual(names, ['1', '2'])
    const info = await sbx.files.getInfo('/tmp/js/many/2')
    assert.equal(info.type, FileType.FILE)
    assert.equal(info.size, 2)
    assert.equal(await sbx.files.makeDir('/tmp/js/d'), true)
    assert.equal(await sbx.files.makeDir('/tmp/js/d'), false)
    await sbx.files.rename('/tmp/js/a.txt', '/tmp/js/d/a.txt')
    assert.equal(await sbx.files.exists('/tmp/js/a.txt'), false)
    assert.equal(await sbx.files.read('/tmp/js/d/a.txt'), 'hello')
    await sbx.files.remove('/tmp/js/d')
    assert.equal(await sbx.files.exists('/tmp/js/d'), false)
    await assert.rejects(sbx.files.read('/tmp/js/none'), NotFoundError)
    // Relative paths are under the user's home.
    await sbx.files.write('main.js', 'x', { user: 'user' })
    assert.equal(await sbx.files.read('/home/user/main.js'), 'x')
  })

  test('a 20 MB file round trip', async () => {
    const big = new Uint8Array(20 << 20)
    for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff
    await sbx.files.write('/tmp/big.bin', big)
    const sum = await sbx.commands.run('wc -c < /tmp/big.bin')
    assert.equal(sum.stdout.trim(), String(big.length))
    const back = await sbx.files.read('/tmp/big.bin', { format: 'bytes' })
    assert.equal(back.length, big.length)
    assert.ok(Buffer.from(back).equals(Buffer.from(big)))
  })

  test('watch_dir reports a write', async () => {
    await sbx.files.makeDir('/tmp/watched')
    const events = []
    const w = await sbx.files.watchDir('/tmp/watched', (e) => events.push(e))
    try {
      await sbx.files.write('/tmp/watched/new.txt', 'x')
      await eventually(() => events.some((e) => e.name === 'new.txt'), 60_000)
    } finally {
      await w.stop()
    }
  })

  test('pty: type, resize, kill', async () => {
    let out = ''
    const dec = new TextDecoder()
    const t = await sbx.pty.create({
      cols: 80,
      rows: 24,
      onData: (d) => {
        out += dec.decode(d)
      },
    })
    await sbx.pty.resize(t.pid, { cols: 100, rows: 30 })
    await sbx.pty.sendInput(t.pid, new TextEncoder().encode('stty size; echo $((40+2))\n'))
    await eventually(() => out.includes('30 100') && out.includes('42'), 60_000)
    assert.equal(await sbx.pty.kill(t.pid), true)
  })

  test("another user's key reaches nothing", async (t) => {
    const other = process.env.BHATTI_E2B_OTHER_KEY
    if (!other) return t.skip('BHATTI_E2B_OTHER_KEY not set')
    await assert.rejects(Sandbox.connect(sbx.sandboxId, { apiKey: other }), NotFoundError)
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId, { apiKey: other }), NotFoundError)
    await assert.rejects(Sandbox.list({ apiKey: 'not-a-key' }).nextItems(), /401|[Uu]nauth/)
    const pages = Sandbox.list({ apiKey: other })
    const theirs = []
    while (pages.hasNext) theirs.push(...(await pages.nextItems()))
    assert.ok(!theirs.some((s) => s.sandboxId === sbx.sandboxId))
  })

  test('kill ends the sandbox', async () => {
    const extra = await Sandbox.create({ timeoutMs: TIMEOUT_MS })
    assert.equal(await extra.isRunning(), true)
    await extra.kill()
    await assert.rejects(Sandbox.getInfo(extra.sandboxId), NotFoundError)
  })
})
