#!/usr/bin/env node
// Import cycles between source files (issue 20): no two files may depend on each other,
// directly or in a ring.
//
// - Rust, per crate (crates/*/src and the addon's src/): a file depends on the files of
//   every module it names with `crate::…`, `super::…`, `self::…` or a child module's name,
//   in `use` trees and in paths inside the code. Modules are found as rustc finds them,
//   from the crate root through `mod x;` (with `#[path]`/`#[cfg_attr(…, path = …)]`, so
//   sys.rs and its sys/macos.rs, sys/windows.rs are all module `sys`); `super` inside an
//   inline `mod tests { … }` is the file's own module. A name the crate root re-exports
//   (`pub use error::Error;`) resolves to the module that defines it; the root's own
//   `pub use` items are its public face, not dependencies.
// - TypeScript (ts/): `import … from './x'`, `export … from './x'` and `import('./x')`.
//
// Usage: node scripts/import-cycles.mjs [ROOT]   prints each cycle, exits 1 if there is one.
// As a module: findCycles(root) → [{ files: [...], ring: [...] }] (files sorted; ring is
// one path through them that returns to its start).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const posix = (p) => p.split(sep).join('/')

/** Blank out comments, string and char literals (keeping offsets and newlines). */
export function stripRust(src) {
  let out = ''
  let i = 0
  const n = src.length
  const blank = (s) => s.replace(/[^\n]/g, ' ')
  while (i < n) {
    const c = src[i]
    const d = src[i + 1]
    if (c === '/' && d === '/') {
      const j = src.indexOf('\n', i)
      const e = j < 0 ? n : j
      out += blank(src.slice(i, e))
      i = e
    } else if (c === '/' && d === '*') {
      let depth = 1
      let j = i + 2
      while (j < n && depth > 0) {
        if (src[j] === '/' && src[j + 1] === '*') {
          depth++
          j += 2
        } else if (src[j] === '*' && src[j + 1] === '/') {
          depth--
          j += 2
        } else j++
      }
      out += blank(src.slice(i, j))
      i = j
    } else if ((c === 'r' || (c === 'b' && d === 'r')) && /^b?r#*"/.test(src.slice(i, i + 40)) && !/\w/.test(src[i - 1] ?? '')) {
      const m = /^b?r(#*)"/.exec(src.slice(i))
      const close = '"' + m[1]
      const j = src.indexOf(close, i + m[0].length)
      const e = j < 0 ? n : j + close.length
      out += blank(src.slice(i, e))
      i = e
    } else if (c === '"') {
      let j = i + 1
      while (j < n && src[j] !== '"') j += src[j] === '\\' ? 2 : 1
      out += blank(src.slice(i, j + 1))
      i = j + 1
    } else if (c === "'") {
      const m = /^'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'\n])'/.exec(src.slice(i, i + 16))
      if (m) {
        out += blank(m[0])
        i += m[0].length
      } else {
        out += c
        i++
      }
    } else {
      out += c
      i++
    }
  }
  return out
}

/** The full paths a `use` tree names: `crate::{a::B, c::{D, E}}` → crate::a::B, crate::c::D, … */
function expandUse(tree) {
  tree = tree.replace(/\s+as\s+\w+/g, '').replace(/\s+/g, '')
  const out = []
  const walk = (prefix, t) => {
    // split t at top-level commas
    let depth = 0
    let start = 0
    const parts = []
    for (let i = 0; i <= t.length; i++) {
      const ch = t[i]
      if (ch === '{') depth++
      else if (ch === '}') depth--
      else if ((ch === ',' && depth === 0) || i === t.length) {
        parts.push(t.slice(start, i))
        start = i + 1
      }
    }
    for (const part of parts) {
      if (!part) continue
      const b = part.indexOf('{')
      if (b >= 0 && part.endsWith('}')) {
        const head = part.slice(0, b).replace(/::$/, '')
        walk(prefix.concat(head ? head.split('::') : []), part.slice(b + 1, -1))
      } else {
        out.push(prefix.concat(part.split('::').filter(Boolean)))
      }
    }
  }
  walk([], tree)
  return out
}

/** Every module of the crate rooted at `rootFile`: Map 'a::b' → [files]; file → module path. */
function crateModules(rootFile) {
  const mods = new Map()
  const fileMod = new Map()
  const visit = (file, path) => {
    if (!existsSync(file) || fileMod.has(file)) return
    const key = path.join('::')
    if (!mods.has(key)) mods.set(key, [])
    mods.get(key).push(file)
    fileMod.set(file, path)
    const src = stripRust(readFileSync(file, 'utf8'))
    const dir = dirname(file)
    const base = file.endsWith('/lib.rs') || file.endsWith('/mod.rs') || file.endsWith('/main.rs') || path.length === 0
    const own = base ? dir : join(dir, file.slice(dir.length + 1, -3))
    // `mod x;` at file level (attributes before it may carry path = "…").
    const re = /((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;/g
    let m
    while ((m = re.exec(src))) {
      const attrs = m[1]
      const name = m[2]
      const paths = [...attrs.matchAll(/path\s*=\s*"([^"]+)"/g)].map((x) => x[1])
      // stripRust blanked the strings: read the attribute text from the original source.
      const orig = readFileSync(file, 'utf8').slice(m.index, m.index + m[0].length)
      const opaths = [...orig.matchAll(/path\s*=\s*"([^"]+)"/g)].map((x) => x[1])
      const candidates = []
      if (opaths.length || paths.length) {
        for (const p of opaths) candidates.push(join(dir, p))
        // the default file too, when the path attributes are only cfg_attr alternatives
        if (/cfg_attr/.test(orig) && !/#\[path/.test(orig)) candidates.push(join(own, `${name}.rs`), join(own, name, 'mod.rs'))
      } else {
        candidates.push(join(own, `${name}.rs`), join(own, name, 'mod.rs'))
      }
      for (const f of candidates) visit(f, path.concat(name))
    }
  }
  visit(rootFile, [])
  return { mods, fileMod }
}

/** Names the crate root re-exports: 'Error' → ['error']. */
function rootReexports(rootFile, mods) {
  const src = stripRust(readFileSync(rootFile, 'utf8'))
  const map = new Map()
  for (const m of src.matchAll(/pub\s+use\s+([^;]+);/g)) {
    for (const p of expandUse(m[1])) {
      const segs = p[0] === 'crate' || p[0] === 'self' ? p.slice(1) : p
      const name = segs[segs.length - 1]
      const modPath = segs.slice(0, -1)
      if (name !== '*' && mods.has(modPath.join('::'))) map.set(name, modPath)
    }
  }
  return map
}

function rustEdges(rootFile, edges) {
  const { mods, fileMod } = crateModules(rootFile)
  const reexp = rootReexports(rootFile, mods)
  // The longest module prefix of an absolute path; a root re-export resolves to its module.
  const resolveAbs = (segs) => {
    for (let k = segs.length; k > 0; k--) {
      const key = segs.slice(0, k).join('::')
      if (mods.has(key)) return key
    }
    if (segs.length && reexp.has(segs[0])) return reexp.get(segs[0]).join('::')
    return null
  }
  for (const [file, fpath] of fileMod) {
    const text = readFileSync(file, 'utf8')
    const src = stripRust(text)
    const targets = new Set()
    // Inline modules: the module path at each offset.
    const inline = [] // [{start, end, name}]
    for (const m of src.matchAll(/\bmod\s+(\w+)\s*\{/g)) {
      let depth = 0
      let j = m.index + m[0].length - 1
      for (; j < src.length; j++) {
        if (src[j] === '{') depth++
        else if (src[j] === '}' && --depth === 0) break
      }
      inline.push({ start: m.index, end: j, name: m[1] })
    }
    const modAt = (off) => fpath.concat(inline.filter((b) => b.start < off && off < b.end).sort((a, b) => a.start - b.start).map((b) => b.name))
    const children = (mp) => new Set([...mods.keys()].filter((k) => k.split('::').length === mp.length + 1 && k.startsWith(mp.length ? mp.join('::') + '::' : '')).map((k) => k.split('::').pop()))
    const add = (segs, off) => {
      let here = modAt(off)
      let abs
      if (segs[0] === 'crate') abs = segs.slice(1)
      else if (segs[0] === 'self' || segs[0] === 'super') {
        let k = 0
        while (segs[k] === 'self') k++
        while (segs[k] === 'super') {
          here = here.slice(0, -1)
          k++
        }
        abs = here.concat(segs.slice(k))
      } else if (children(here).has(segs[0])) abs = here.concat(segs)
      else return
      const key = resolveAbs(abs)
      if (key === null) return
      for (const f of mods.get(key)) if (f !== file) targets.add(f)
    }
    const useSpans = []
    for (const m of src.matchAll(/(\bpub(?:\([^)]*\))?\s+)?\buse\s+([^;]+);/g)) {
      useSpans.push([m.index, m.index + m[0].length])
      // A module's `pub use` of its own submodules' items is its public face (lib.rs,
      // edit/mod.rs), not a dependency of its code.
      const here = modAt(m.index)
      const own = (p) => p[0] !== 'super' && (p[0] === 'crate' ? p.slice(1, here.length + 1).join('::') === here.join('::') && p.length > here.length + 2 : true)
      if (m[1]) {
        const rest = expandUse(m[2]).filter((p) => !own(p))
        for (const p of rest) add(p, m.index)
        continue
      }
      for (const p of expandUse(m[2])) add(p, m.index)
    }
    for (const m of src.matchAll(/(?<![\w:])((?:crate|super|self)(?:::\w+)+)/g)) {
      if (useSpans.some(([a, b]) => a <= m.index && m.index < b)) continue
      add(m[1].split('::'), m.index)
    }
    const from = file
    if (!edges.has(from)) edges.set(from, new Set())
    for (const t of targets) edges.get(from).add(t)
  }
}

function tsEdges(dir, edges) {
  const files = []
  const walk = (d) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e)
      if (statSync(p).isDirectory()) walk(p)
      else if (/\.(m|c)?tsx?$/.test(e) && !e.endsWith('.d.ts')) files.push(p)
    }
  }
  walk(dir)
  for (const file of files) {
    const src = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '')
    const set = new Set()
    const specs = [
      ...src.matchAll(/\b(?:import|export)\s+(?:type\s+)?[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g),
      ...src.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g),
      ...src.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm),
    ]
    for (const m of specs) {
      const spec = m[1]
      if (!spec.startsWith('.')) continue
      const base = resolve(dirname(file), spec).replace(/\.(m|c)?js$/, '')
      for (const cand of [base, `${base}.ts`, `${base}.mts`, `${base}.cts`, `${base}.tsx`, join(base, 'index.ts')]) {
        if (files.includes(cand)) {
          if (cand !== file) set.add(cand)
          break
        }
      }
    }
    edges.set(file, set)
  }
}

/** Strongly connected components with more than one file (Tarjan), each with one ring. */
function cycles(edges) {
  let index = 0
  const idx = new Map()
  const low = new Map()
  const stack = []
  const on = new Set()
  const out = []
  const strong = (v) => {
    idx.set(v, index)
    low.set(v, index++)
    stack.push(v)
    on.add(v)
    for (const w of edges.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w)
        low.set(v, Math.min(low.get(v), low.get(w)))
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)))
    }
    if (low.get(v) === idx.get(v)) {
      const comp = []
      let w
      do {
        w = stack.pop()
        on.delete(w)
        comp.push(w)
      } while (w !== v)
      if (comp.length > 1) out.push(comp)
    }
  }
  for (const v of [...edges.keys()].sort()) if (!idx.has(v)) strong(v)
  return out.map((comp) => {
    const inComp = new Set(comp)
    const start = [...comp].sort()[0]
    // shortest ring through `start` (BFS back to it)
    const prev = new Map()
    const q = [start]
    let end = null
    while (q.length && end === null) {
      const v = q.shift()
      for (const w of [...(edges.get(v) ?? [])].sort()) {
        if (!inComp.has(w)) continue
        if (w === start) {
          end = v
          break
        }
        if (!prev.has(w)) {
          prev.set(w, v)
          q.push(w)
        }
      }
    }
    const ring = [start]
    for (let v = end; v !== start && v !== undefined; v = prev.get(v)) ring.splice(1, 0, v)
    ring.push(start)
    return { files: [...comp].sort(), ring }
  })
}

/** The import cycles of the project at `root` (paths relative to it, with '/'). */
export function findCycles(root) {
  root = resolve(root)
  const edges = new Map()
  const roots = []
  if (existsSync(join(root, 'src', 'lib.rs'))) roots.push(join(root, 'src', 'lib.rs'))
  const crates = join(root, 'crates')
  if (existsSync(crates)) {
    for (const c of readdirSync(crates).sort()) {
      for (const r of ['lib.rs', 'main.rs']) {
        const f = join(crates, c, 'src', r)
        if (existsSync(f)) roots.push(f)
      }
    }
  }
  for (const r of roots) rustEdges(r, edges)
  if (existsSync(join(root, 'ts'))) tsEdges(join(root, 'ts'), edges)
  const rel = (f) => posix(relative(root, f))
  return cycles(edges).map(({ files, ring }) => ({ files: files.map(rel), ring: ring.map(rel) }))
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..')
  const found = findCycles(root)
  for (const c of found) console.log(`cycle: ${c.ring.join(' -> ')}${c.files.length > c.ring.length - 1 ? `  (component: ${c.files.join(', ')})` : ''}`)
  console.log(found.length ? `${found.length} import cycle(s)` : 'no import cycles')
  process.exit(found.length ? 1 : 0)
}
