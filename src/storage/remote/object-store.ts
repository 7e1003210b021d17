// Remote checkpoint storage, behind the smallest interface that keeps a checkpoint
// safe: immutable named objects plus a conditional create. Every object a checkpoint
// needs is written before the checkpoint's own object, which is created last with
// `createIfAbsent`; a checkpoint exists remotely iff that object does, so a torn upload
// (a killed process, a lost connection) is never taken for a checkpoint.
//
// Implementations: Azure Blob Storage (azure-blob-store.ts) and a local or mounted
// directory (dir-store.ts). An S3 store is one more file implementing ObjectStore and
// one more `kind` in openObjectStore.

export interface StoredObject {
  name: string;
  bytes: number;
}

export interface ObjectStore {
  /** Where the objects live, for messages: "azure-blob devstoreaccount1/ckpts", "dir /mnt/x". */
  readonly where: string;
  /** Checks access; creates the container or directory if missing and allowed. One-line errors. */
  open(): Promise<void>;
  /** Writes (or replaces) an object. */
  put(name: string, body: Uint8Array): Promise<void>;
  /** Writes the object only if no object of that name exists; false if one did. */
  createIfAbsent(name: string, body: Uint8Array): Promise<boolean>;
  /** The object's bytes, or undefined if there is none. */
  get(name: string): Promise<Buffer | undefined>;
  /** `length` bytes of the object from `offset` (fewer at its end), or undefined if there is none. */
  getRange(name: string, offset: number, length: number): Promise<Buffer | undefined>;
  /** Objects whose names start with `prefix`, in no particular order. */
  list(prefix: string): Promise<StoredObject[]>;
  /** Deletes the object; no error if it is already gone. */
  delete(name: string): Promise<void>;
}

/** `state.remote` after validation (config/schema.ts). */
export type RemoteSpec =
  | { kind: 'azure-blob'; connectionString?: string; accountUrl?: string; sasToken?: string; container: string; prefix: string; restore?: 'lazy' | 'eager' }
  | { kind: 'dir'; path: string; prefix: string; restore?: 'lazy' | 'eager' };

export async function openObjectStore(spec: RemoteSpec): Promise<ObjectStore> {
  // Loaded on demand: runs without remote checkpoints never load the Azure SDK.
  const store = spec.kind === 'azure-blob' ? new (await import('./azure-blob-store.js')).AzureBlobStore(spec) : new (await import('./dir-store.js')).DirStore(spec.path);
  await store.open();
  return store;
}
