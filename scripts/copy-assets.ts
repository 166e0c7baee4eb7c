/** Copies what tsc does not emit (the Lua scripts, the tier limits data file) into dist/. */
import { cpSync } from 'node:fs';

cpSync('src/store/lua', 'dist/store/lua', { recursive: true });
cpSync('src/config/tier-limits.json', 'dist/config/tier-limits.json');
