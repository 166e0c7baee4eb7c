/**
 * The pages' CSP (src/http/app.ts) allows inline scripts and styles for Swagger UI. The dashboard
 * has none (its script and stylesheet are files of 'self'), so its responses drop that allowance:
 * an injected inline script or style would not run.
 */
export function withoutUnsafeInline(csp: string): string {
  return csp
    .split(';')
    .map((directive) =>
      /^\s*(script|style)-src\s/.test(directive) ? directive.replace(/\s+'unsafe-inline'/g, '') : directive,
    )
    .join(';');
}
