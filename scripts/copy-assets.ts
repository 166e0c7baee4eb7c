/**
 * Copies what tsc does not emit into dist/: the Lua scripts, the tier limits and price data files,
 * and the dashboard's page, script and stylesheet (its .ts modules are compiled).
 */
import { cpSync } from 'node:fs';

cpSync('src/store/lua', 'dist/store/lua', { recursive: true });
cpSync('src/config/tier-limits.json', 'dist/config/tier-limits.json');
cpSync('src/usage/prices.json', 'dist/usage/prices.json');
cpSync('src/http/dashboard', 'dist/http/dashboard', {
  recursive: true,
  filter: (source) => !source.endsWith('.ts'),
});
