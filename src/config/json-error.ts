/**
 * Where a text that JSON.parse refused goes wrong, said without quoting it. V8's messages quote
 * the text around the error ('Unexpected token 'A', ..."[AIzaSyB3..." is not valid JSON'), and
 * a keys file's text is secrets: the message would carry a key fragment into logs and
 * /admin/config. This scanner follows the JSON grammar (RFC 8259) only far enough to find the
 * first offending character, and names it by line and column.
 */
export interface JsonSyntaxError {
  reason: string;
  /** 1-based. */
  line: number;
  /** 1-based, in UTF-16 code units (what an editor shows for ASCII text). */
  column: number;
}

class Stop {
  readonly offset: number;
  readonly reason: string;
  constructor(offset: number, reason: string) {
    this.offset = offset;
    this.reason = reason;
  }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** null when the scanner finds no error (JSON.parse's and this grammar's should never differ). */
export function findJsonSyntaxError(text: string): JsonSyntaxError | null {
  let i = 0;
  const end = (): never => {
    throw new Stop(text.length, 'unexpected end of the text');
  };
  const unexpected = (what = 'unexpected character'): never => {
    throw new Stop(i, what);
  };
  const ws = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  const string = () => {
    i++; // the opening quote
    for (;;) {
      if (i >= text.length) throw new Stop(text.length, 'unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) unexpected('control character in a string');
      if (c === 0x5c) {
        i++;
        if (i >= text.length) throw new Stop(text.length, 'unterminated string');
        const e = text[i];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) unexpected('bad \\u escape in a string');
          i += 5;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i++;
        else unexpected('bad escape in a string');
      } else i++;
    }
  };
  const word = (w: string) => {
    if (text.startsWith(w, i)) i += w.length;
    else unexpected();
  };
  const value = (): void => {
    ws();
    if (i >= text.length) end();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (i >= text.length) end();
        if (text[i] !== '"') unexpected('expected a property name in double quotes');
        string();
        ws();
        if (i >= text.length) end();
        if (text[i] !== ':') unexpected("expected ':' after a property name");
        i++;
        value();
        ws();
        if (i >= text.length) end();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        unexpected("expected ',' or '}' after a property value");
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (i >= text.length) end();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        unexpected("expected ',' or ']' after an array element");
      }
    }
    if (c === '"') string();
    else if (c === 't') word('true');
    else if (c === 'f') word('false');
    else if (c === 'n') word('null');
    else {
      NUMBER.lastIndex = i;
      if (!NUMBER.test(text)) unexpected();
      i = NUMBER.lastIndex;
    }
  };
  try {
    value();
    ws();
    if (i < text.length) unexpected('unexpected text after the JSON value');
    return null;
  } catch (err) {
    // RangeError: nested deeper than the stack allows; say nothing rather than guess.
    if (!(err instanceof Stop)) return null;
    return { reason: err.reason, ...lineAndColumn(text, err.offset) };
  }
}

function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let j = 0; j < offset && j < text.length; j++) {
    if (text.charCodeAt(j) === 0x0a) {
      line++;
      lineStart = j + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

/** "not valid JSON: <reason> at line L, column C", never quoting the text. */
export function describeJsonError(text: string): string {
  const e = findJsonSyntaxError(text);
  return e ? `not valid JSON: ${e.reason} at line ${e.line}, column ${e.column}` : 'not valid JSON';
}
