/** JSON values from a schema (Gemini's OpenAPI subset or JSON Schema), for the fake Gemini. */

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return undefined;
}

function schemaType(s: Obj): string | undefined {
  let t = s.type;
  if (Array.isArray(t)) t = t.find((x) => String(x).toLowerCase() !== 'null') ?? t[0];
  if (typeof t === 'string') return t.toLowerCase();
  if (isObj(s.properties)) return 'object';
  if (s.items !== undefined) return 'array';
  if (Array.isArray(s.enum)) return 'string';
  return undefined;
}

function resolveRef(ref: string, root: Obj): Obj | undefined {
  if (!ref.startsWith('#')) return undefined;
  let cur: unknown = root;
  for (const seg of ref.slice(1).split('/')) {
    if (seg === '') continue;
    const key = seg.replace(/~1/g, '/').replace(/~0/g, '~');
    if (!isObj(cur)) return undefined;
    cur = cur[key];
  }
  return isObj(cur) ? cur : undefined;
}

function sampleString(s: Obj, name: string): string {
  const format = typeof s.format === 'string' ? s.format : '';
  let v: string;
  if (format === 'date-time') v = '2025-01-01T00:00:00Z';
  else if (format === 'date') v = '2025-01-01';
  else if (format === 'time') v = '12:00:00';
  else if (format === 'email') v = 'sample@example.com';
  else if (format === 'uri' || format === 'url') v = 'https://example.com/sample';
  else if (format === 'uuid') v = '00000000-0000-4000-8000-000000000000';
  else v = `sample ${name}`;
  const max = num(s.maxLength);
  const min = num(s.minLength);
  if (max !== undefined && v.length > max) v = v.slice(0, Math.max(0, max));
  if (min !== undefined && v.length < min) v = v.padEnd(min, 'x');
  return v;
}

function sampleNumber(s: Obj, integer: boolean): number {
  let lo = num(s.minimum);
  let hi = num(s.maximum);
  const exLo = s.exclusiveMinimum;
  const exHi = s.exclusiveMaximum;
  if (num(exLo) !== undefined) lo = num(exLo);
  if (num(exHi) !== undefined) hi = num(exHi);
  const loOpen = exLo !== undefined && exLo !== false;
  const hiOpen = exHi !== undefined && exHi !== false;
  let v: number;
  if (lo !== undefined && hi !== undefined) v = (lo + hi) / 2;
  else if (lo !== undefined) v = lo + 1;
  else if (hi !== undefined) v = hi - 1;
  else v = integer ? 1 : 0.5;
  if (!integer) return v;
  let r = Math.floor(v);
  if (lo !== undefined && (r < lo || (loOpen && r === lo)))
    r = loOpen && Number.isInteger(lo) ? lo + 1 : Math.ceil(lo);
  if (hi !== undefined && (r > hi || (hiOpen && r === hi)))
    r = hiOpen && Number.isInteger(hi) ? hi - 1 : Math.floor(hi);
  return r;
}

export interface SampleOptions {
  /**
   * Objects get only their `required` properties when they name any (a model filling a
   * function's arguments leaves most optional ones out); by default every property.
   */
  requiredOnly?: boolean;
}

function sample(s: Obj, root: Obj, name: string, depth: number, o: SampleOptions): unknown {
  if (depth > 12) return null;
  if (typeof s.$ref === 'string') {
    const target = resolveRef(s.$ref, root);
    return target ? sample(target, root, name, depth + 1, o) : null;
  }
  if ('const' in s) return s.const;
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0];
  for (const k of ['anyOf', 'oneOf'] as const) {
    const alts = s[k];
    if (Array.isArray(alts) && alts.length > 0) {
      const pick = alts.find((a) => isObj(a) && schemaType(a) !== 'null') ?? alts[0];
      if (isObj(pick)) return sample(pick, root, name, depth + 1, o);
    }
  }
  if (Array.isArray(s.allOf) && s.allOf.length > 0) {
    const merged: Obj = {};
    const props: Obj = {};
    const required = new Set<unknown>();
    for (const part of [...s.allOf, s]) {
      if (!isObj(part)) continue;
      const p = part === s ? s : typeof part.$ref === 'string' ? (resolveRef(part.$ref, root) ?? {}) : part;
      if (p !== s) Object.assign(merged, p);
      if (isObj(p.properties)) Object.assign(props, p.properties);
      if (Array.isArray(p.required)) for (const r of p.required) required.add(r);
    }
    const all = { ...merged, ...s, allOf: undefined, properties: props, required: [...required] };
    return sample(all, root, name, depth + 1, o);
  }
  switch (schemaType(s)) {
    case 'string':
      return sampleString(s, name);
    case 'number':
      return sampleNumber(s, false);
    case 'integer':
      return sampleNumber(s, true);
    case 'boolean':
      return true;
    case 'null':
      return null;
    case 'array': {
      const min = num(s.minItems) ?? 0;
      const max = num(s.maxItems) ?? Number.POSITIVE_INFINITY;
      let count = Math.min(Math.max(2, min), max);
      if (depth > 8) count = min;
      const items = isObj(s.items)
        ? s.items
        : Array.isArray(s.prefixItems) && isObj(s.prefixItems[0])
          ? s.prefixItems[0]
          : {};
      const out: unknown[] = [];
      for (let i = 0; i < count; i++) out.push(sample(items, root, name, depth + 1, o));
      return out;
    }
    case 'object': {
      const out: Obj = {};
      const props = isObj(s.properties) ? s.properties : {};
      const order: string[] = Array.isArray(s.propertyOrdering) ? s.propertyOrdering.map(String) : [];
      for (const k of Object.keys(props)) if (!order.includes(k)) order.push(k);
      const required = Array.isArray(s.required) ? s.required.map(String) : [];
      const keep = o.requiredOnly && required.length > 0 ? new Set(required) : null;
      for (const k of order) {
        const ps = props[k];
        if (isObj(ps) && (keep === null || keep.has(k))) out[k] = sample(ps, root, k, depth + 1, o);
      }
      return out;
    }
    default:
      return `sample ${name}`;
  }
}

/**
 * A JSON value conforming to the schema (every property unless `requiredOnly`, arrays of 2
 * items, enums' first value).
 */
export function sampleFromSchema(schema: Obj, options: SampleOptions = {}): unknown {
  return sample(schema, schema, 'value', 0, options);
}
