// The strict exposition-format parser of test/helpers/prom-text.ts, which the /metrics
// test trusts: what it accepts (escapes, timestamps, special values, histograms, and
// prom-client's own output with awkward label values) and what it rejects.
import t from 'tap';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { parseExposition } from './helpers/prom-text.js';

t.test('accepts the format, escapes included', async (t) => {
  const body = [
    '# a comment',
    '# HELP http_requests_total Requests \\\\ served\\nper path',
    '# TYPE http_requests_total counter',
    'http_requests_total{method="post",path="/a \\"b\\" \\\\ c\\nd",} 1027 1395066363000',
    'http_requests_total{method="get",path="/"} 3',
    '',
    '# TYPE temp gauge',
    'temp NaN',
    'temp{where="out"} -Inf',
    'temp{where="in"} +Inf',
    'temp{where="x"} -1.5e-3',
    '# TYPE latency_seconds histogram',
    'latency_seconds_bucket{le="0.1"} 1',
    'latency_seconds_bucket{le="+Inf"} 2',
    'latency_seconds_sum 0.3',
    'latency_seconds_count 2',
    'untyped_thing 7',
    '',
  ].join('\n');
  const f = parseExposition(body);
  t.same([...f.keys()], ['http_requests_total', 'temp', 'latency_seconds', 'untyped_thing']);
  const req = f.get('http_requests_total')!;
  t.equal(req.help, 'Requests \\ served\nper path');
  t.equal(req.type, 'counter');
  t.same(req.samples[0], { name: 'http_requests_total', labels: { method: 'post', path: '/a "b" \\ c\nd' }, value: 1027, timestamp: 1395066363000 });
  t.same(f.get('temp')!.samples.map((s) => s.value), [NaN, -Infinity, Infinity, -0.0015]);
  t.same(f.get('latency_seconds')!.samples.map((s) => s.name), ['latency_seconds_bucket', 'latency_seconds_bucket', 'latency_seconds_sum', 'latency_seconds_count']);
  t.equal(f.get('untyped_thing')!.type, 'untyped');
});

t.test('reads prom-client output back exactly, awkward label values included', async (t) => {
  const registry = new Registry();
  const c = new Counter({ name: 'x_total', help: 'with "quotes" and \\ and\nnewline', labelNames: ['a', 'b'], registers: [registry] });
  const g = new Gauge({ name: 'y_bytes', help: 'y', labelNames: ['a'], registers: [registry] });
  const h = new Histogram({ name: 'z_seconds', help: 'z', buckets: [0.1, 1], registers: [registry] });
  const awkward = ['plain', 'quote " here', 'back\\slash', 'new\nline', 'all "\\\n', 'ünïcødé →', ''];
  awkward.forEach((v, i) => c.inc({ a: v, b: String(i) }, i + 1));
  g.set({ a: 'q"' }, 1.25);
  h.observe(0.5);
  const f = parseExposition(await registry.metrics());
  t.equal(f.get('x_total')!.help, 'with "quotes" and \\ and\nnewline');
  t.same(f.get('x_total')!.samples.map((s) => [s.labels.a, Number(s.labels.b), s.value]), awkward.map((v, i) => [v, i, i + 1]));
  t.same(f.get('y_bytes')!.samples, [{ name: 'y_bytes', labels: { a: 'q"' }, value: 1.25 }]);
  t.equal(f.get('z_seconds')!.type, 'histogram');
  t.equal(f.get('z_seconds')!.samples.find((s) => s.name === 'z_seconds_count')!.value, 1);
});

t.test('rejects what is not the format', async (t) => {
  const bad: [string, RegExp][] = [
    ['a 1', /no line feed/],
    ['a{x="1\\t"} 1\n', /bad escape/],
    ['a{x="1} 1\n', /unterminated|expected/],
    ['a{x=1} 1\n', /expected '"'/],
    ['a{x="1" y="2"} 1\n', /expected ','/],
    ['a{x="1",x="2"} 1\n', /label x twice/],
    ['a{__x="1"} 1\n', /reserved/],
    ['a{1x="1"} 1\n', /bad label name/],
    ['a 1\na 2\n', /twice/],
    ['a{x="1"} 1\na{x="1",} 2\n', /twice/],
    ['1a 1\n', /bad metric name/],
    ['a one\n', /not a float/],
    ['a 1 2 3\n', /optional timestamp/],
    ['a 1 1.5\n', /bad timestamp/],
    ['a1\n', /bad metric name|blank before the value/],
    ['a{x="1"}1\n', /blank before the value/],
    ['a 1\n# TYPE a counter\n', /TYPE after samples/],
    ['# TYPE a counter\n# TYPE a gauge\n', /second TYPE/],
    ['# HELP a x\n# HELP a y\n', /second HELP/],
    ['# HELP a bad \\t escape\n', /bad escape/],
    ['# TYPE a countr\n', /unknown type/],
    ['# TYPE a counter\na -1\n', /counter a is -1/],
    ['a 1\nb 1\na{x="2"} 1\n', /not contiguous/],
  ];
  for (const [body, why] of bad) t.throws(() => parseExposition(body), why, JSON.stringify(body));
});
