import { PromptInjectionRefused } from '../../errors/gateway-errors.ts';

/**
 * A deliberately narrow prompt-injection detector: it refuses only blatant attempts (instruction
 * overrides, requests for the system prompt or for secrets, chat-template role tokens), so that
 * ordinary text that merely talks about prompts or API keys still goes through. It is one layer:
 * the prompt builders also keep user text out of the instructions and between delimiters.
 */
export type InjectionCategory =
  | 'instruction_override'
  | 'system_prompt_request'
  | 'secret_request'
  | 'role_injection';

export interface InjectionFinding {
  category: InjectionCategory;
  /** The matched fragment (for logs; never echoed to the client). */
  match: string;
}

const DISCLOSE = String.raw`(?:reveal|show|print|display|output|repeat|recite|tell|give|share|leak|dump|expose|send|list|provide|write\s+out|spell\s+out)`;
const FILLER = String.raw`(?:\s+(?:me|us|all|of|the|your|my|exact|full|entire|complete|original|current|hidden|secret|verbatim|now|please|again)){0,6}`;

const RULES: Array<{ category: InjectionCategory; re: RegExp }> = [
  // "ignore (all) (of) (the) previous instructions", "disregard prior rules", "override the system prompt"
  {
    category: 'instruction_override',
    re: /\b(?:ignore|disregard|forget|override|bypass|overrule|discard|abandon)\s+(?:(?:all|any|every|each|the|your|my|of|these|those|everything|anything)\s+)*(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial|system|existing|old|given|current)\s+(?:\w+\s+)?(?:instructions?|prompts?|rules|directions|directives|guidelines|context|commands?|messages?|constraints|programming|orders)\b/,
  },
  // "ignore all instructions", "disregard your rules"
  {
    category: 'instruction_override',
    re: /\b(?:ignore|disregard|override|bypass)\s+(?:all|any|your)\s+(?:of\s+)?(?:the\s+|your\s+)?(?:instructions|rules|guidelines|directives|restrictions|safety\s+rules)\b/,
  },
  // "forget everything you were told / above / before"
  {
    category: 'instruction_override',
    re: /\bforget\s+(?:everything|all|what)\s+(?:you\s+(?:were|have\s+been|'ve\s+been)\s+(?:told|given|instructed)|(?:that\s+)?(?:was\s+)?(?:said\s+)?(?:above|before|previously|so\s+far))/,
  },
  // "new instructions:", "from now on you will ignore…", "you are now DAN / in developer mode"
  {
    category: 'instruction_override',
    re: /\b(?:new|updated|real|actual|revised)\s+(?:system\s+)?instructions?\s*:/,
  },
  {
    category: 'instruction_override',
    re: /\byou\s+are\s+now\s+(?:in\s+)?(?:dan\b|developer\s+mode|jailbroken|unrestricted|unfiltered|free\s+of\s+(?:all\s+)?(?:rules|restrictions))/,
  },
  {
    category: 'instruction_override',
    re: /\b(?:enable|activate|enter|switch\s+to)\s+(?:developer|god|jailbreak|dan|debug|admin)\s+mode\b/,
  },
  // "what is your system prompt", "print the system prompt", "repeat your instructions verbatim"
  {
    category: 'system_prompt_request',
    re: new RegExp(
      String.raw`\b(?:${DISCLOSE}|what\s+(?:is|are|was|were)|what's)${FILLER}\s+(?:your|the)${FILLER}\s+(?:system|initial|original|hidden|secret|internal|developer|pre-?)\s*(?:prompt|instructions?|message|directives?)\b`,
    ),
  },
  {
    category: 'system_prompt_request',
    re: new RegExp(
      String.raw`\b(?:${DISCLOSE}|what\s+(?:is|are|were)|what's)${FILLER}\s+your\s+(?:\w+\s+)?(?:prompt|instructions|rules|guidelines)\b`,
    ),
  },
  {
    category: 'system_prompt_request',
    re: /\brepeat\s+(?:the\s+|all\s+(?:the\s+)?)?(?:text|words|instructions|everything)\s+(?:above|before\s+this)\b/,
  },
  // "give me your API key", "print the api keys", "what is your api key"
  {
    category: 'secret_request',
    re: new RegExp(
      String.raw`\b${DISCLOSE}${FILLER}\s+(?:your|the|all|any)${FILLER}\s+(?:\w+\s+)?(?:api[\s_-]?keys?|secret\s+keys?|access\s+tokens?|auth(?:entication)?\s+tokens?|bearer\s+tokens?|credentials|passwords?|env(?:ironment)?\s+variables)\b`,
    ),
  },
  {
    category: 'secret_request',
    re: /\b(?:what\s+(?:is|are)|what's)\s+your\s+(?:\w+\s+)?(?:api[\s_-]?keys?|secret\s+keys?|access\s+tokens?|credentials|passwords?)\b/,
  },
  // chat-template and role tokens smuggled into data
  {
    category: 'role_injection',
    re: /<\|(?:im_start|im_end|system|assistant|user|endoftext)\|>|\[\/?inst\]|<<\/?sys>>/,
  },
];

/** Lower-cased, NFKC-normalized text without zero-width characters and with collapsed whitespace. */
export function normalizeForDetection(text: string): string {
  return text
    .normalize('NFKC')
    .replace(/[\u200B-\u200D\u2060\uFEFF\u00AD]/g, '')
    .replace(/[’‘`´]/g, "'")
    .toLowerCase()
    .replace(/\s+/g, ' ');
}

export function detectPromptInjection(text: string): InjectionFinding | null {
  const normalized = normalizeForDetection(text);
  for (const { category, re } of RULES) {
    const m = re.exec(normalized);
    if (m) return { category, match: m[0].slice(0, 120) };
  }
  return null;
}

const DESCRIPTIONS: Record<InjectionCategory, string> = {
  instruction_override: 'an attempt to override the instructions',
  system_prompt_request: 'a request for the system prompt',
  secret_request: 'a request for keys or credentials',
  role_injection: 'chat-template role markers',
};

/** Throws PromptInjectionRefused (with the category) when value is a blatant injection. */
export function refuseInjection(field: string, value: string): void {
  const finding = detectPromptInjection(value);
  if (finding)
    throw new PromptInjectionRefused(
      `${field} was refused: it contains ${DESCRIPTIONS[finding.category]}`,
      finding.category,
    );
}
