// A strict parser of the Prometheus text exposition format (version 0.0.4), for tests
// of the /metrics endpoint. It rejects what a Prometheus server would reject and a bit
// more: every line must be a HELP, a TYPE, a comment or a well-formed sample; HELP and
// TYPE at most once per family and before its samples; a family's samples contiguous;
// no series twice; names, label names, escapes and values exactly as the format says.
//
//   # HELP <name> <docstring, escapes \\ and \n>
//   # TYPE <name> counter|gauge|histogram|summary|untyped
//   <name>[{<label>="<value, escapes \\ \" \n>",…[,]}] <value> [<timestamp ms>]

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
  timestamp?: number;
}

export interface Family {
  name: string;
  help?: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

export class ExpositionError extends Error {
  constructor(line: number, text: string, why: string) {
    super(`line ${line}: ${why}: ${JSON.stringify(text)}`);
  }
}

function parseValue(s: string): number {
  if (s === 'NaN') return NaN;
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (!FLOAT.test(s)) throw new Error(`not a float: ${s}`);
  return Number(s);
}

/** The family a sample belongs to: histograms and summaries have suffixed series. */
function familyOf(sample: string, families: Map<string, Family>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sample.endsWith(suffix)) continue;
    const base = sample.slice(0, -suffix.length);
    const f = families.get(base);
    if (f && (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket'))) return base;
  }
  return sample;
}

/** Unescapes a HELP docstring (`\\` and `\n` only). */
function unescapeHelp(s: string): string {
  return s.replace(/\\(.?)/g, (_m, c: string) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    throw new Error(`bad escape \\${c} in HELP`);
  });
}

/** Labels from `{…}` at text[0]; returns them and the rest of the line after '}'. */
function parseLabels(text: string): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  const skipBlanks = () => {
    while (text[i] === ' ' || text[i] === '\t') i++;
  };
  for (;;) {
    skipBlanks();
    if (text[i] === '}') return { labels, rest: text.slice(i + 1) };
    const name = /^[a-zA-Z0-9_]+/.exec(text.slice(i))?.[0];
    if (!name || !LABEL_NAME.test(name)) throw new Error(`bad label name at ${i}`);
    if (name.startsWith('__')) throw new Error(`reserved label name ${name}`);
    if (name in labels) throw new Error(`label ${name} twice`);
    i += name.length;
    skipBlanks();
    if (text[i] !== '=') throw new Error(`expected '=' after label ${name}`);
    i++;
    skipBlanks();
    if (text[i] !== '"') throw new Error(`expected '"' to open the value of ${name}`);
    i++;
    let value = '';
    for (;;) {
      const c = text[i];
      if (c === undefined) throw new Error(`unterminated value of ${name}`);
      if (c === '"') break;
      if (c === '\\') {
        const e = text[i + 1];
        if (e === '\\') value += '\\';
        else if (e === '"') value += '"';
        else if (e === 'n') value += '\n';
        else throw new Error(`bad escape \\${e ?? ''} in the value of ${name}`);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    i++;
    labels[name] = value;
    skipBlanks();
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new Error(`expected ',' or '}' after the value of ${name}`);
  }
}

/** Parses a whole exposition; throws an ExpositionError naming the first bad line. */
export function parseExposition(body: string): Map<string, Family> {
  if (body !== '' && !body.endsWith('\n')) throw new ExpositionError(body.split('\n').length, body.split('\n').at(-1)!, 'the last line has no line feed');
  const families = new Map<string, Family>();
  const declared = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, type: 'untyped', samples: [] }));
    return f;
  };
  const typed = new Set<string>();
  const helped = new Set<string>();
  const series = new Set<string>();
  let current: string | undefined; // the family of the previous sample
  const closed = new Set<string>(); // families whose samples ended
  const lines = body.split('\n');
  lines.pop();
  lines.forEach((line, n) => {
    const fail = (why: string): never => {
      throw new ExpositionError(n + 1, line, why);
    };
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
      if (!m) return; // a comment
      const [, kind, name, rest = ''] = m;
      if (!METRIC_NAME.test(name!)) fail(`bad metric name ${name}`);
      const f = declared(name!);
      if (f.samples.length) fail(`${kind} after samples of ${name}`);
      if (kind === 'HELP') {
        if (helped.has(name!)) fail(`second HELP for ${name}`);
        helped.add(name!);
        try {
          f.help = unescapeHelp(rest);
        } catch (e) {
          fail((e as Error).message);
        }
      } else {
        if (typed.has(name!)) fail(`second TYPE for ${name}`);
        if (!TYPES.has(rest)) fail(`unknown type '${rest}'`);
        typed.add(name!);
        f.type = rest as Family['type'];
      }
      return;
    }
    const name = /^[a-zA-Z0-9_:]+/.exec(line)?.[0];
    if (!name || !METRIC_NAME.test(name)) fail('bad metric name');
    let rest = line.slice(name!.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith('{')) {
      try {
        ({ labels, rest } = parseLabels(rest));
      } catch (e) {
        fail((e as Error).message);
      }
    }
    if (!/^[ \t]/.test(rest)) fail('expected a blank before the value');
    const fields = rest.trim().split(/[ \t]+/);
    if (fields.length < 1 || fields.length > 2) fail('expected a value and an optional timestamp');
    let value = 0;
    try {
      value = parseValue(fields[0]!);
    } catch (e) {
      fail((e as Error).message);
    }
    const sample: Sample = { name: name!, labels, value };
    if (fields[1] !== undefined) {
      if (!/^-?\d+$/.test(fields[1])) fail(`bad timestamp ${fields[1]}`);
      sample.timestamp = Number(fields[1]);
    }
    const family = familyOf(name!, families);
    if (family !== current) {
      if (closed.has(family)) fail(`samples of ${family} are not contiguous`);
      if (current !== undefined) closed.add(current);
      current = family;
    }
    const id = `${name}{${Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`;
    if (series.has(id)) fail(`series ${id} twice`);
    series.add(id);
    const f = declared(family);
    if (f.type === 'counter' && !(value >= 0)) fail(`counter ${name} is ${value}`);
    f.samples.push(sample);
  });
  return families;
}
