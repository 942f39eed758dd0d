// A real OpenID Provider for Cerdas's tests: panva's oidc-provider, configured from a JSON file.
//
//   node provider.mjs config.json
//
// config.json: {"port", "issuer", "audience", "keys": [private JWKs, the first signs],
//               "clients": [{"client_id", "client_secret", "claims": {...}}]}
//
// Each client stands for one person signing in: the client_credentials grant gives a JWT access
// token (RFC 9068) for the audience, whose `sub` and other claims (name, NIP, Keycloak-style
// realm_access.roles, Kemendagri region codes) are the client's `claims`. Prints "ready <issuer>"
// once it listens.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const claimsOf = new Map(config.clients.map((c) => [c.client_id, c.claims ?? {}]));

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
  })),
  jwks: { keys: config.keys },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // The resource indicator must be an absolute URI; the token's audience is config.audience.
      defaultResource: () => 'https://api.cerdas.test/',
      getResourceServerInfo: () => ({
        scope: 'openid',
        audience: config.audience,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 300,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  formats: {
    customizers: {
      jwt: async (ctx, token, jwt) => {
        Object.assign(jwt.payload, claimsOf.get(token.clientId) ?? {});
      },
    },
  },
});
provider.proxy = false;

const server = provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${config.issuer}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
