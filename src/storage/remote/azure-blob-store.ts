// ObjectStore on Azure Blob Storage (@azure/storage-blob, tested against azurite).
// Objects are block blobs in one container under the configured prefix;
// createIfAbsent is an upload with `If-None-Match: *`, which the service refuses with
// 409 when the blob exists — the conditional create that makes a checkpoint object
// appear once, complete, or not at all.
import { BlobServiceClient, RestError, type ContainerClient } from '@azure/storage-blob';
import { errors } from '../../errors.js';
import type { ObjectStore, RemoteSpec, StoredObject } from './object-store.js';

type AzureSpec = Extract<RemoteSpec, { kind: 'azure-blob' }>;

/** The account named by a connection string or account URL (for messages only). */
function accountOf(spec: AzureSpec): string {
  if (spec.connectionString) {
    const name = /(?:^|;)AccountName=([^;]+)/i.exec(spec.connectionString)?.[1];
    if (name) return name;
    const endpoint = /(?:^|;)BlobEndpoint=([^;]+)/i.exec(spec.connectionString)?.[1];
    return endpoint ?? '(connection string)';
  }
  try {
    return new URL(spec.accountUrl!).host.split('.')[0]!;
  } catch {
    return spec.accountUrl ?? '?';
  }
}

/** One line for a failed call: status and service error code, or the network error. */
function describe(e: unknown): string {
  if (e instanceof RestError) {
    const code = (e.details as { errorCode?: string } | undefined)?.errorCode ?? e.code;
    if (e.statusCode === 403) return `access denied (403${code ? ` ${code}` : ''}): check the account key or SAS token`;
    if (e.statusCode === undefined) return `cannot reach the endpoint (${e.message})`;
    return `${e.statusCode}${code ? ` ${code}` : ''}: ${e.message}`;
  }
  return (e as Error)?.message ?? String(e);
}

export class AzureBlobStore implements ObjectStore {
  readonly where: string;
  private readonly container: ContainerClient;

  constructor(spec: AzureSpec) {
    this.where = `azure-blob account ${accountOf(spec)}, container ${spec.container}`;
    // A few quick retries: an unreachable endpoint must become an error the uploader
    // retries on its own schedule, not a call that hangs for minutes.
    const options = { retryOptions: { maxTries: 3, tryTimeoutInMs: 30_000, retryDelayInMs: 200, maxRetryDelayInMs: 2_000 } };
    let service: BlobServiceClient;
    try {
      service = spec.connectionString
        ? BlobServiceClient.fromConnectionString(spec.connectionString, options)
        : new BlobServiceClient(`${spec.accountUrl!.replace(/\/$/, '')}?${spec.sasToken!.replace(/^\?/, '')}`, undefined, options);
    } catch (e) {
      throw errors.remote(this.where, `bad credentials: ${describe(e)}`);
    }
    this.container = service.getContainerClient(spec.container);
  }

  private fail(what: string, e: unknown): never {
    throw errors.remote(this.where, `${what}: ${describe(e)}`);
  }

  async open(): Promise<void> {
    try {
      await this.container.createIfNotExists();
    } catch (e) {
      // A SAS token scoped to one container may not create it but can still use it.
      if (e instanceof RestError && e.statusCode === 403) {
        let exists: boolean;
        try {
          exists = await this.container.exists();
        } catch {
          this.fail('cannot open the container', e); // the credentials are refused altogether
        }
        if (exists) return;
        this.fail('the container does not exist and these credentials cannot create it', e);
      }
      this.fail('cannot open the container', e);
    }
  }

  async put(name: string, body: Uint8Array): Promise<void> {
    try {
      await this.container.getBlockBlobClient(name).uploadData(body);
    } catch (e) {
      this.fail(`writing ${name}`, e);
    }
  }

  async createIfAbsent(name: string, body: Uint8Array): Promise<boolean> {
    try {
      await this.container.getBlockBlobClient(name).uploadData(body, { conditions: { ifNoneMatch: '*' } });
      return true;
    } catch (e) {
      if (e instanceof RestError && (e.statusCode === 409 || e.statusCode === 412)) return false;
      this.fail(`creating ${name}`, e);
    }
  }

  async get(name: string): Promise<Buffer | undefined> {
    try {
      return await this.container.getBlobClient(name).downloadToBuffer();
    } catch (e) {
      if (e instanceof RestError && e.statusCode === 404) return undefined;
      this.fail(`reading ${name}`, e);
    }
  }

  async getRange(name: string, offset: number, length: number): Promise<Buffer | undefined> {
    try {
      return await this.container.getBlobClient(name).downloadToBuffer(offset, length);
    } catch (e) {
      if (e instanceof RestError && e.statusCode === 404) return undefined;
      this.fail(`reading ${name} at ${offset}+${length}`, e);
    }
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    try {
      for await (const b of this.container.listBlobsFlat({ prefix })) out.push({ name: b.name, bytes: b.properties.contentLength ?? 0 });
    } catch (e) {
      this.fail(`listing ${prefix}`, e);
    }
    return out;
  }

  async delete(name: string): Promise<void> {
    try {
      await this.container.getBlobClient(name).deleteIfExists();
    } catch (e) {
      this.fail(`deleting ${name}`, e);
    }
  }
}
