// A real OpenID Connect provider (npm `oidc-provider`, OpenID certified) for the external-issuer
// tests (tests/api/external_issuers.rs). Client credentials only, JWT or opaque access tokens
// chosen by resource indicator (RFC 8707), introspection (RFC 7662) and revocation (RFC 7009).
//
//   node provider.mjs --port P --keys FILE [--rotate]
//
// FILE holds the signing keys (RSA, P-256, Ed25519) as private JWKs plus PEM, so the
// test can also sign forged tokens with the IdP's own keys. It is created when missing, and
// replaced with fresh keys (new kids) under --rotate: restarting with --rotate is a key
// rotation after which the old kids are gone from the JWKS.
//
// Prints READY once it listens on 127.0.0.1, and JWKS_HIT for every request of the JWKS, so
// the test can count how often the gateway fetches it.
//
// Resources: urn:otp-gateway (JWT, RS256), urn:otp-gateway:ps256, :es256, :eddsa (JWT, that
// alg), urn:otp-gateway:opaque (opaque, introspected); all with audience urn:otp-gateway.
// urn:other-api: a JWT for another audience.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import fs from 'node:fs';

import Provider, { errors } from 'oidc-provider';

const args = {};
for (let i = 2; i < process.argv.length; i += 1) {
  const name = process.argv[i].replace(/^--/, '');
  const next = process.argv[i + 1];
  if (next === undefined || next.startsWith('--')) {
    args[name] = true;
  } else {
    args[name] = next;
    i += 1;
  }
}
const port = Number(args.port);
if (!port || !args.keys) {
  console.error('usage: provider.mjs --port P --keys FILE [--rotate]');
  process.exit(2);
}

function generate() {
  const tag = randomUUID().slice(0, 8);
  const pairs = [
    ['rsa', generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ['ec', generateKeyPairSync('ec', { namedCurve: 'P-256' })],
    ['ed', generateKeyPairSync('ed25519')],
  ];
  return pairs.map(([type, { privateKey, publicKey }]) => ({
    type,
    jwk: { ...privateKey.export({ format: 'jwk' }), kid: `${type}-${tag}`, use: 'sig' },
    pem: privateKey.export({ format: 'pem', type: 'pkcs8' }),
    public_pem: publicKey.export({ format: 'pem', type: 'spki' }),
  }));
}

let keys;
if (args.rotate || !fs.existsSync(args.keys)) {
  keys = generate();
  fs.writeFileSync(args.keys, JSON.stringify(keys, null, 2));
} else {
  keys = JSON.parse(fs.readFileSync(args.keys, 'utf8'));
}

const SCOPE = 'one-time-password-sms:send-validate';
const AUDIENCE = 'urn:otp-gateway';
const resources = {
  'urn:otp-gateway': { audience: AUDIENCE, format: 'jwt', alg: 'RS256' },
  'urn:otp-gateway:ps256': { audience: AUDIENCE, format: 'jwt', alg: 'PS256' },
  'urn:otp-gateway:es256': { audience: AUDIENCE, format: 'jwt', alg: 'ES256' },
  'urn:otp-gateway:eddsa': { audience: AUDIENCE, format: 'jwt', alg: 'EdDSA' },
  'urn:otp-gateway:opaque': { audience: AUDIENCE, format: 'opaque' },
  'urn:other-api': { audience: 'urn:other-api', format: 'jwt', alg: 'RS256' },
};

const client = (id, scope) => ({
  client_id: id,
  client_secret: `${id}-secret-0123456789`,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  ...(scope ? { scope } : {}),
});

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [
    client('app', `${SCOPE} other:scope`),
    client('app-noscope', 'other:scope'),
    // The gateway's own credentials, for introspection.
    client('gateway'),
  ],
  jwks: { keys: keys.map((k) => k.jwk) },
  scopes: [SCOPE, 'other:scope'],
  enabledJWA: {
    // EdDSA is the name RFC 8037 gives and the gateway accepts.
    requestObjectSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'],
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => AUDIENCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        const r = resources[indicator];
        if (!r) throw new errors.InvalidTarget();
        return {
          scope: `${SCOPE} other:scope`,
          audience: r.audience,
          accessTokenTTL: Number(args.ttl || 300),
          accessTokenFormat: r.format,
          ...(r.alg ? { jwt: { sign: { alg: r.alg } } } : {}),
        };
      },
    },
  },
});

provider.use(async (ctx, next) => {
  if (ctx.path === '/jwks') console.log('JWKS_HIT');
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  console.log('READY');
});
