// Key → key group: a stable hash of the key's order-preserving encoding (the same
// bytes whatever the thread or process), FNV-1a 32-bit, modulo the key group count.
import { encodeKey, type Key } from '../state/keys.js';

export function hashEncoded(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // Final avalanche so that near-identical keys spread over the groups.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 0;
}

export function keyGroupOf(key: unknown, keyGroups: number): number {
  return hashEncoded(encodeKey(key as Key, Infinity)) % keyGroups;
}
