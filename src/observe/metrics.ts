// Optional Prometheus endpoint (`metrics.port`): per task instance counters and gauges,
// served by the coordinator from the metrics the instances report every 250 ms.
//
// Names follow the Prometheus conventions: `_total` only on counters, base units in the
// name (`_seconds`), no unit for plain counts of pages. Instances report running totals
// that start again at 0 when the flow restarts from a checkpoint; the counters here add
// each report's increase over the instance's previous one, so they only grow for the
// whole run (restarts included; records reprocessed after a restart count again).
import { createServer, type Server } from 'node:http';
import { Registry, Gauge, Counter } from 'prom-client';
import type { TaskMetrics } from '../runtime/task.js';
import type { RemoteStats } from '../storage/remote/uploader.js';
import { errors } from '../errors.js';

export interface MetricsServer {
  update(flow: string, metrics: TaskMetrics[]): void;
  /**
   * A restarted attempt begins: its instances report totals from 0 again, so their next
   * reports count in full. (Without this call, a report smaller than the previous one is
   * taken as a restart; one already larger is under-counted by the previous total.)
   */
  beginAttempt(): void;
  /** With state.remote: the flow's upload lag and totals (src/storage/remote/uploader.ts). */
  updateRemote(flow: string, stats: RemoteStats): void;
  readonly port: number;
  close(): Promise<void>;
}

/** One exposed metric: its name, TYPE and HELP, and how to read it from a report. */
interface MetricDef {
  name: string;
  type: 'counter' | 'gauge';
  help: string;
  read: (m: TaskMetrics) => number;
}

/** Every metric the endpoint serves, labelled { flow, task, subtask }. Listed in the README. */
export const METRICS: readonly MetricDef[] = [
  { name: 'tidepool_records_in_total', type: 'counter', help: 'Records read by a task instance (from its source or its input rings)', read: (m) => m.recordsIn },
  { name: 'tidepool_records_out_total', type: 'counter', help: 'Records emitted by a task instance (into its output rings, or written to its sink)', read: (m) => m.recordsOut },
  { name: 'tidepool_backpressure_seconds_total', type: 'counter', help: 'Time a task instance spent parked on full output rings', read: (m) => m.blockedMs / 1000 },
  { name: 'tidepool_state_cache_hits_total', type: 'counter', help: 'State page cache hits of a task instance', read: (m) => m.cacheHits },
  { name: 'tidepool_state_cache_misses_total', type: 'counter', help: 'State page cache misses of a task instance', read: (m) => m.cacheMisses },
  { name: 'tidepool_state_pages', type: 'gauge', help: 'State pages held by a task instance (in its cache and its spill file)', read: (m) => m.statePages },
  { name: 'tidepool_state_spilled_pages', type: 'gauge', help: 'State pages of a task instance in its spill file', read: (m) => m.stateSpilled },
  { name: 'tidepool_watermark_seconds', type: 'gauge', help: 'Event-time watermark of a task instance, epoch seconds (-Inf before the first, +Inf after end of input)', read: (m) => (m.watermark === null ? -Infinity : m.watermark / 1000) },
  { name: 'tidepool_watermark_lag_seconds', type: 'gauge', help: 'Wall clock minus the event-time watermark of a task instance (+Inf before the first watermark, 0 after end of input)', read: (m) => (m.watermark === null ? Infinity : m.watermark === Infinity ? 0 : (Date.now() - m.watermark) / 1000) },
  { name: 'tidepool_late_records_total', type: 'counter', help: 'Records a window or join dropped as too late (sent to .late())', read: (m) => m.lateRecords },
  { name: 'tidepool_records_skipped_total', type: 'counter', help: 'Records that made user code throw and were dropped (errors.onRecord skip)', read: (m) => m.skippedRecords },
  { name: 'tidepool_dead_letters_total', type: 'counter', help: 'Records that made user code throw and went to the dead-letter file', read: (m) => m.deadLetters },
  { name: 'tidepool_pending_timers', type: 'gauge', help: 'Event-time and processing-time timers registered in a task instance', read: (m) => m.pendingTimers },
  { name: 'tidepool_window_state_entries', type: 'gauge', help: 'Entries of window state (panes, windows or sessions) in a task instance', read: (m) => m.windowState ?? 0 },
  { name: 'tidepool_join_state_entries', type: 'gauge', help: 'Entries of join state in a task instance, both sides', read: (m) => m.joinState ?? 0 },
  { name: 'tidepool_input_queued_bytes', type: 'gauge', help: 'Bytes queued in the input rings of a task instance (written, not yet read): what a barrier waits behind', read: (m) => m.queuedBytes ?? 0 },
  { name: 'tidepool_input_queue_limit_bytes', type: 'gauge', help: 'What the input rings of a task instance may hold: their size, or less as checkpoint.alignmentTargetMs limits them to what the instance consumes in that time', read: (m) => m.queueLimitBytes ?? 0 },
];

const LABELS = ['flow', 'task', 'subtask'] as const;

/** Per flow, with state.remote (labelled { flow }). Listed in the README. */
export const REMOTE_METRICS = [
  { name: 'tidepool_remote_lag_seconds', type: 'gauge', help: 'How long the newest local checkpoint has waited for its remote upload (0: none waiting)', read: (r: RemoteStats) => r.lagMs / 1000 },
  { name: 'tidepool_remote_checkpoints_uploaded_total', type: 'counter', help: 'Checkpoints uploaded to state.remote', read: (r: RemoteStats) => r.uploaded },
  { name: 'tidepool_remote_upload_bytes_total', type: 'counter', help: 'Bytes of pack objects uploaded to state.remote', read: (r: RemoteStats) => r.bytesUploaded },
  { name: 'tidepool_remote_upload_failures_total', type: 'counter', help: 'Failed upload attempts (each is retried)', read: (r: RemoteStats) => r.failures },
] as const;

export async function startMetricsServer(port: number): Promise<MetricsServer> {
  const registry = new Registry();
  const series = METRICS.map((d) => ({
    def: d,
    metric: d.type === 'counter'
      ? new Counter({ name: d.name, help: d.help, labelNames: LABELS, registers: [registry] })
      : new Gauge({ name: d.name, help: d.help, labelNames: LABELS, registers: [registry] }),
  }));
  /** Per instance, the values of its previous report (for the counters' increases). */
  const previous = new Map<string, number[]>();
  // Registered on first use: a run without state.remote serves no remote families.
  let remoteSeries: { def: (typeof REMOTE_METRICS)[number]; metric: Counter<string> | Gauge<string> }[] | undefined;
  const remote = () => (remoteSeries ??= REMOTE_METRICS.map((d) => ({
    def: d,
    metric: d.type === 'counter'
      ? new Counter({ name: d.name, help: d.help, labelNames: ['flow'], registers: [registry] })
      : new Gauge({ name: d.name, help: d.help, labelNames: ['flow'], registers: [registry] }),
  })));
  /** Per flow, the remote totals of the previous update (they only grow within a run). */
  const remoteBefore = new Map<string, number[]>();
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || new URL(req.url ?? '/', 'http://localhost').pathname !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then((body) => {
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(body);
    }, (e: Error) => res.writeHead(500).end(e.message));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(errors.io(`metrics.port: cannot serve metrics on 127.0.0.1:${port}`, e)));
    server.listen(port, '127.0.0.1', () => resolve());
  });
  server.unref();
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    update(flow, metrics) {
      for (const m of metrics) {
        const labels = { flow, task: m.label, subtask: String(m.subtask) };
        const id = `${flow}\0${m.task}\0${m.subtask}`;
        const now = series.map(({ def }) => def.read(m));
        let before = previous.get(id);
        // A counter that went down: the instance started again (a restart); count all of it.
        if (before && series.some(({ def }, i) => def.type === 'counter' && now[i]! < before![i]!)) before = undefined;
        series.forEach(({ metric }, i) => {
          if (metric instanceof Gauge) metric.set(labels, now[i]!);
          else (metric as Counter<string>).inc(labels, now[i]! - (before?.[i] ?? 0));
        });
        previous.set(id, now);
      }
    },
    beginAttempt() {
      previous.clear();
    },
    updateRemote(flow, stats) {
      const series = remote();
      const now = series.map(({ def }) => def.read(stats));
      const before = remoteBefore.get(flow);
      series.forEach(({ metric }, i) => {
        if (metric instanceof Gauge) metric.set({ flow }, now[i]!);
        else (metric as Counter<string>).inc({ flow }, Math.max(0, now[i]! - (before?.[i] ?? 0)));
      });
      remoteBefore.set(flow, now);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // a scraper's keep-alive connection must not hold the run's end
      }),
  };
}
