/** Copies what tsc does not emit (the Lua scripts, the tier limits and price data files) into dist/. */
import { cpSync } from 'node:fs';

cpSync('src/store/lua', 'dist/store/lua', { recursive: true });
cpSync('src/config/tier-limits.json', 'dist/config/tier-limits.json');
cpSync('src/usage/prices.json', 'dist/usage/prices.json');
