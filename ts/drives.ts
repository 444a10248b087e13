/** Drive listing and watching: which block devices there are, and which are safe to write. */
import { EventEmitter } from 'node:events'
import native = require('./native')
import { run } from './run'
import {
  checkBoolean,
  checkBytes,
  checkOptions,
  checkPath,
  invalidArgValue,
  PathLike,
} from './validate'

/** A partition of a {@link Drive}. */
export interface Partition {
  /** Kernel name (`sda1`, `mmcblk0p1`). */
  name: string
  /** Device node (`/dev/sda1`). */
  path: string
  /** Partition number, when the kernel gives one. */
  number?: number
  /** Start on the drive, in bytes. */
  start: number
  /** Size in bytes. */
  size: number
  /** Where it is mounted. */
  mountpoints: string[]
}

/** How a drive is attached. */
export type Bus =
  'usb' | 'mmc' | 'sata' | 'nvme' | 'scsi' | 'virtio' | 'loop' | 'virtual' | 'unknown'

/** A whole block device, as {@link list} finds it. */
export interface Drive {
  /** Kernel name (`sda`, `nvme0n1`, `loop3`). */
  name: string
  /** Device node (`/dev/sda`). */
  path: string
  /** Size in bytes. */
  size: number
  /** Logical block size in bytes. */
  logicalBlockSize: number
  /** Physical block size in bytes. */
  physicalBlockSize: number
  /** Vendor string (USB/SCSI), trimmed. */
  vendor?: string
  /** Model string (or an MMC card's name), trimmed. */
  model?: string
  /** How it is attached. */
  bus: Bus
  /** Removable medium (USB sticks, card readers). */
  removable: boolean
  /** Marked read-only by the kernel. */
  readOnly: boolean
  /** Its partitions. */
  partitions: Partition[]
  /** Where the whole device is mounted (a filesystem without a partition table). */
  mountpoints: string[]
  /** device-mapper / md devices built on it (`dm-0`, `md127`). */
  holders: string[]
  /** For a loop device, the file behind it. */
  backingFile?: string
  /**
   * Holds the running system: the root or a boot filesystem, swap, or a device-mapper /
   * md / LVM member. {@link flash} refuses it with `ERR_SPARSEKIT_SYSTEM_DRIVE` unless
   * `force`. Never offer such a drive as a target.
   */
  isSystem: boolean
  /** Why it is a system drive (`root filesystem (/)`, `swap (/dev/sda2)`, `held by dm-0`). */
  systemReasons: string[]
}

/**
 * List whole block devices with a size above 0 (no `lsblk` or helper binary): on Linux
 * from sysfs and `/proc/self/mountinfo`, on Windows `\\.\PhysicalDriveN` by their ioctls
 * and volumes, on macOS `/dev/diskN` by ioctls and `getfsstat`. Size, block sizes,
 * vendor/model, bus, removable, read-only, partitions with mount points, and `isSystem`
 * (with `systemReasons`).
 */
export async function list(): Promise<Drive[]> {
  const drives = await native.drivesList()
  return drives.map((d) => {
    const out: Drive = {
      name: d.name,
      path: d.path,
      size: d.size,
      logicalBlockSize: d.logicalBlockSize,
      physicalBlockSize: d.physicalBlockSize,
      bus: d.bus as Bus,
      removable: d.removable,
      readOnly: d.readOnly,
      partitions: d.partitions.map((p) => {
        const q: Partition = {
          name: p.name,
          path: p.path,
          start: p.start,
          size: p.size,
          mountpoints: p.mountpoints,
        }
        if (p.number != null) q.number = p.number
        return q
      }),
      mountpoints: d.mountpoints,
      holders: d.holders,
      isSystem: d.isSystem,
      systemReasons: d.systemReasons,
    }
    if (d.vendor != null) out.vendor = d.vendor
    if (d.model != null) out.model = d.model
    if (d.backingFile != null) out.backingFile = d.backingFile
    return out
  })
}

/** Options of {@link watch}. */
export interface WatchOptions {
  /** How often to look, in ms; default 1000. */
  interval?: number
}

/**
 * Drives added and removed: an `EventEmitter` emitting `'add'` (a {@link Drive}),
 * `'remove'` (the last seen {@link Drive}), `'change'` (a drive whose size, partitions or
 * mounts changed) and `'error'`. It polls {@link list} every `interval`
 * ms (1 s by default; a listing costs well under a millisecond of native work), which
 * needs no udev and no privileges. The first listing emits `'add'` for every drive
 * present. The timer does not keep the process alive; call `close()` to stop.
 */
/** The events of a {@link DriveWatcher} and their arguments. */
export interface DriveWatcherEvents {
  /** A drive appeared (also every drive present at the first poll). */
  add: [drive: Drive]
  /** A drive's description changed (partitions, mount points, size, ...). */
  change: [drive: Drive]
  /** A drive went away. */
  remove: [drive: Drive]
  /** A poll failed (emitted only while someone listens for it). */
  error: [error: Error]
}

type DriveListener<K extends keyof DriveWatcherEvents> = (...args: DriveWatcherEvents[K]) => void
type AnyListener = (...args: unknown[]) => void

export class DriveWatcher extends EventEmitter {
  /** Listen for `add`, `change`, `remove` or `error`; other names do not compile. */
  override on<K extends keyof DriveWatcherEvents>(event: K, listener: DriveListener<K>): this {
    return super.on(event, listener as AnyListener)
  }
  override once<K extends keyof DriveWatcherEvents>(event: K, listener: DriveListener<K>): this {
    return super.once(event, listener as AnyListener)
  }
  override off<K extends keyof DriveWatcherEvents>(event: K, listener: DriveListener<K>): this {
    return super.off(event, listener as AnyListener)
  }
  override addListener<K extends keyof DriveWatcherEvents>(
    event: K,
    listener: DriveListener<K>,
  ): this {
    return super.addListener(event, listener as AnyListener)
  }
  override removeListener<K extends keyof DriveWatcherEvents>(
    event: K,
    listener: DriveListener<K>,
  ): this {
    return super.removeListener(event, listener as AnyListener)
  }
  override emit<K extends keyof DriveWatcherEvents>(
    event: K,
    ...args: DriveWatcherEvents[K]
  ): boolean {
    return super.emit(event, ...args)
  }

  private timer: NodeJS.Timeout | undefined
  private known = new Map<string, Drive>()
  private running = false
  private closed = false

  constructor(interval: number) {
    super()
    const tick = async () => {
      if (this.running || this.closed) return
      this.running = true
      try {
        const now = await list()
        if (this.closed) return
        const seen = new Set<string>()
        for (const d of now) {
          seen.add(d.path)
          const old = this.known.get(d.path)
          if (!old) this.emit('add', d)
          else if (JSON.stringify(old) !== JSON.stringify(d)) this.emit('change', d)
          this.known.set(d.path, d)
        }
        for (const [path, d] of this.known) {
          if (!seen.has(path)) {
            this.known.delete(path)
            this.emit('remove', d)
          }
        }
      } catch (e) {
        if (this.listenerCount('error'))
          this.emit('error', e instanceof Error ? e : new Error(String(e)))
      } finally {
        this.running = false
      }
    }
    setImmediate(tick)
    this.timer = setInterval(tick, interval)
    this.timer.unref()
  }

  /** The drives currently known. */
  drives(): Drive[] {
    return [...this.known.values()]
  }

  /** Stop watching. */
  close(): void {
    this.closed = true
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }
}

/** Watch for drives added and removed (see {@link DriveWatcher}). */
export function watch(options?: WatchOptions): DriveWatcher {
  const o = checkOptions('options', options, ['interval']) as WatchOptions
  const interval = checkBytes('options.interval', o.interval) ?? 1000
  if (interval < 10) throw invalidArgValue('options.interval', interval, 'must be at least 10 (ms)')
  return new DriveWatcher(interval)
}

/** Options of {@link probe}. */
export interface ProbeOptions {
  /** Probe a system drive or a busy one too (no exclusive open). Never without asking the user. */
  force?: boolean
  /** Unmount the drive's mounted partitions first (otherwise `ERR_SPARSEKIT_DRIVE_BUSY`). */
  unmount?: boolean
  /** Cancels the probe (the bytes probed are restored); rejects with `ERR_SPARSEKIT_ABORTED`. */
  signal?: AbortSignal
}

/** The result of {@link probe}. */
export interface ProbeResult {
  /** The size the drive claims, in bytes. */
  size: number
  /** The size that really holds data: the first probed offset that did not read back what was written, or `size`. */
  realSize: number
  /** `realSize < size`: a counterfeit card or stick (writes past `realSize` wrap around or vanish). */
  counterfeit: boolean
  /** Offsets probed. */
  points: number
}

/**
 * Detect counterfeit capacity: a unique 4 KiB pattern is written at 64 to 129 offsets
 * spread over the claimed size (multiples of a power of two, where a wrap-around lands on
 * another probed offset, and the last block), synced, read back past the cache, and the
 * bytes that were there written back, so a sound drive is left byte-identical. The drive is
 * checked and opened as `flash` opens it (system and mounted drives refused).
 */
export async function probe(path: PathLike, options?: ProbeOptions): Promise<ProbeResult> {
  const p = checkPath('path', path)
  const o = checkOptions('options', options, ['force', 'unmount', 'signal']) as ProbeOptions
  const opts = {
    force: checkBoolean('options.force', o.force),
    unmount: checkBoolean('options.unmount', o.unmount),
  }
  const r = await run({ signal: o.signal }, (cancel) => native.drivesProbe(p, opts, cancel))
  return { size: r.size, realSize: r.realSize, counterfeit: r.counterfeit, points: r.points }
}
