/** The seeded random numbers of the test data: the same seed gives the same tree and the same activity. */

/** mulberry32: small, fast, seeded; good enough for shaping test data. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** A microsecond offset within a second: the sub-second part of an mtime. */
  micros(): number {
    return this.int(0, 999_999);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  logUniform(lo: number, hi: number): number {
    return Math.round(lo * Math.exp(this.next() * Math.log(hi / lo)));
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let k = out.length - 1; k > 0; k--) {
      const j = this.int(0, k);
      [out[k], out[j]] = [out[j], out[k]];
    }
    return out;
  }
  str(alphabet: string, n: number): string {
    let s = '';
    for (let k = 0; k < n; k++) s += alphabet[this.int(0, alphabet.length - 1)];
    return s;
  }
  hex(n: number): string {
    return this.str('0123456789abcdef', n);
  }
}
