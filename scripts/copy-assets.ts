/** Copies what tsc does not emit (the Lua scripts) into dist/. */
import { cpSync } from 'node:fs';

cpSync('src/store/lua', 'dist/store/lua', { recursive: true });
