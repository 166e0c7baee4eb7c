/**
 * OpenAI content parts (text, image_url, input_audio, file) → Gemini parts. Media must come
 * inline: data: URLs or base64; remote URLs and uploaded file ids are refused with a 400.
 */
import type { Part } from '../upstream/gemini-types.ts';
import { invalidParam } from './errors.ts';
import { isObj } from './json.ts';

/** One part of a user message's content array → a Gemini part. */
export function contentPart(p: unknown, param: string): Part {
  if (!isObj(p)) throw invalidParam(param, 'must be an object');
  switch (p.type) {
    case 'text':
      if (typeof p.text !== 'string') throw invalidParam(`${param}.text`, 'must be a string');
      return { text: p.text };
    case 'image_url': {
      const img = p.image_url;
      const url = typeof img === 'string' ? img : isObj(img) ? img.url : undefined;
      if (typeof url !== 'string' || url === '') throw invalidParam(`${param}.image_url.url`, 'is required');
      if (/^https?:/i.test(url)) {
        throw invalidParam(
          `${param}.image_url.url`,
          'remote image URLs are not fetched by this gateway; send the image inline as a data: URL (data:image/png;base64,...)',
          'unsupported_image_url',
        );
      }
      return { inlineData: parseDataUrl(url, `${param}.image_url.url`) };
    }
    case 'input_audio': {
      const a = p.input_audio;
      if (!isObj(a) || typeof a.data !== 'string' || a.data === '')
        throw invalidParam(`${param}.input_audio.data`, 'is required (base64)');
      const format = typeof a.format === 'string' && a.format !== '' ? a.format.toLowerCase() : 'wav';
      return {
        inlineData: { mimeType: `audio/${format}`, data: checkBase64(a.data, `${param}.input_audio.data`) },
      };
    }
    case 'file': {
      const f = p.file;
      if (!isObj(f)) throw invalidParam(`${param}.file`, 'is required');
      if (typeof f.file_data === 'string' && f.file_data !== '') {
        if (f.file_data.startsWith('data:'))
          return { inlineData: parseDataUrl(f.file_data, `${param}.file.file_data`) };
        const filename = typeof f.filename === 'string' ? f.filename : '';
        const mimeType = mimeFromFilename(filename);
        if (!mimeType)
          throw invalidParam(
            `${param}.file.file_data`,
            'send a data: URL, or a filename whose extension names the type',
          );
        return { inlineData: { mimeType, data: checkBase64(f.file_data, `${param}.file.file_data`) } };
      }
      throw invalidParam(
        `${param}.file`,
        'uploaded files (file_id) are not supported; send file_data inline',
        'unsupported_file',
      );
    }
    default:
      throw invalidParam(`${param}.type`, `unsupported content part type "${String(p.type)}"`);
  }
}

const EXTENSION_TYPES: Record<string, string> = {
  pdf: 'application/pdf',
  txt: 'text/plain',
  md: 'text/markdown',
  html: 'text/html',
  csv: 'text/csv',
  json: 'application/json',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  mp3: 'audio/mp3',
  wav: 'audio/wav',
  mp4: 'video/mp4',
};

function mimeFromFilename(name: string): string | undefined {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? undefined : EXTENSION_TYPES[name.slice(dot + 1).toLowerCase()];
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function checkBase64(data: string, param: string): string {
  const clean = data.replace(/\s+/g, '').replace(/-/g, '+').replace(/_/g, '/');
  if (clean === '' || !BASE64.test(clean) || clean.length % 4 === 1)
    throw invalidParam(param, 'is not valid base64');
  return clean;
}

/** `data:<mime>[;base64],<data>` → Gemini inlineData (base64). */
export function parseDataUrl(url: string, param = 'url'): { mimeType: string; data: string } {
  const m = /^data:([^,]*),(.*)$/is.exec(url);
  if (!m) throw invalidParam(param, 'must be a data: URL (data:<media type>;base64,<data>)');
  const meta = m[1]!.split(';').map((s) => s.trim());
  const mimeType = (meta[0] ?? '').toLowerCase();
  if (!/^[a-z0-9.+-]+\/[a-z0-9.+-]+$/.test(mimeType))
    throw invalidParam(param, 'the data: URL must name a media type');
  const payload = m[2]!;
  if (meta.slice(1).some((s) => s.toLowerCase() === 'base64'))
    return { mimeType, data: checkBase64(payload, param) };
  let bytes: Buffer;
  try {
    bytes = Buffer.from(decodeURIComponent(payload), 'utf8');
  } catch {
    throw invalidParam(param, 'the data: URL is not valid percent-encoding');
  }
  return { mimeType, data: bytes.toString('base64') };
}
