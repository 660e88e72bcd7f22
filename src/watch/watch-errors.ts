/**
 * Node's recursive fs.watch (Linux, node:internal/fs/recursive_watch) lstat()s `dir/name` for every
 * event in a watched directory and does not catch the error: when a directory is replaced by a
 * file (`rm -rf d; touch d`, one line for an agent in any writable mount), the lstat of a path
 * under the former directory throws ENOTDIR out of an event handler, and the watcher process dies
 * — its quarantine, disk guard and mount sentinel with it, until the next podshell command.
 * Measured on Node 24.22: the uncaught ENOTDIR kills the process; caught, the recursive watch goes
 * on reporting events (the rest of the tree, and directories made later). This keeps the watcher
 * alive through exactly those errors; any other uncaught exception still ends it.
 */
export function surviveRecursiveWatchErrors(say: (line: string) => void): void {
  process.on('uncaughtException', (e: NodeJS.ErrnoException) => {
    if ((e.code === 'ENOTDIR' || e.code === 'ENOENT') && e.syscall === 'lstat' && /recursive_watch/.test(e.stack ?? '')) {
      say(`watch: ${e.code} from Node's recursive watch for ${e.path ?? '?'} (a directory replaced by a file); still watching`)
      return
    }
    say(`watcher: ${e.stack ?? e.message}`)
    process.exit(1)
  })
}
