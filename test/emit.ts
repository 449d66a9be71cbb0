// How the child programs of the multi-process tests write one JSON record per
// line to stdout. The pipe to the parent can be full (the parent is slow to
// drain it on a loaded machine): then a write answers EAGAIN, or writes part
// of the line, and the record must not be lost or cut, so the rest is
// written after a moment.
import { writeSync } from 'node:fs';

const pause = new Int32Array(new SharedArrayBuffer(4));

/** Writes `record` as one line of JSON to stdout, whole, however full the pipe. */
export function emitLine(record: object): void {
  const bytes = Buffer.from(`${JSON.stringify(record)}\n`);
  for (let done = 0; done < bytes.length;) {
    try {
      done += writeSync(1, bytes, done);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}
