// Optional Prometheus endpoint (`metrics.port`): per-task counters and gauges,
// served by the coordinator from the metrics the instances report every 250 ms.
import { createServer, type Server } from 'node:http';
import { Registry, Gauge } from 'prom-client';
import type { TaskMetrics } from './task.js';

export interface MetricsServer {
  update(flow: string, metrics: TaskMetrics[]): void;
  readonly port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(port: number): Promise<MetricsServer> {
  const registry = new Registry();
  const labels = ['flow', 'task', 'subtask'] as const;
  const gauge = (name: string, help: string) => new Gauge({ name, help, labelNames: labels, registers: [registry] });
  const recordsIn = gauge('tidepool_records_in_total', 'Records read by a task instance');
  const recordsOut = gauge('tidepool_records_out_total', 'Records emitted by a task instance');
  const blocked = gauge('tidepool_backpressure_seconds_total', 'Time a task instance spent parked on full output rings');
  const pages = gauge('tidepool_state_pages', 'State pages held (cache and spill) by a task instance');
  const hits = gauge('tidepool_state_cache_hits_total', 'Page cache hits');
  const misses = gauge('tidepool_state_cache_misses_total', 'Page cache misses');
  const server: Server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then((body) => {
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(body);
    }, (e: Error) => res.writeHead(500).end(e.message));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  server.unref();
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    update(flow, metrics) {
      for (const m of metrics) {
        const l = { flow, task: m.label, subtask: String(m.subtask) };
        recordsIn.set(l, m.recordsIn);
        recordsOut.set(l, m.recordsOut);
        blocked.set(l, m.blockedMs / 1000);
        pages.set(l, m.statePages);
        hits.set(l, m.cacheHits);
        misses.set(l, m.cacheMisses);
      }
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
