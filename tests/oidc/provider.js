// A real OpenID Connect provider (panva/oidc-provider) for the sign-in tests, on 127.0.0.1 only.
// Configured by environment: OIDC_PORT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI, and
// OIDC_ACCOUNTS, a JSON object {login: {email, name, groups}}; any other login is refused.
// Sign-in uses the provider's built-in interaction pages; the password must equal `<login>-password`.
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS || '{}');

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.OIDC_CLIENT_ID,
    client_secret: process.env.OIDC_CLIENT_SECRET,
    redirect_uris: [process.env.OIDC_REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  async findAccount(ctx, sub) {
    const account = accounts[sub];
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, email: account.email, email_verified: true, name: account.name,
                 preferred_username: sub, groups: account.groups || [] };
      },
    };
  },
  cookies: { keys: ['buildboard-test-oidc-cookie-key'] },
});

// The dev interaction accepts any login; refuse unknown accounts and wrong passwords before it does.
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && /^\/interaction\/[^/]+$/.test(ctx.path)) {
    const body = await new Promise((resolve) => {
      let data = '';
      ctx.req.on('data', (c) => { data += c; });
      ctx.req.on('end', () => resolve(data));
    });
    const form = new URLSearchParams(body);
    if (form.get('prompt') === 'login'
        && (!accounts[form.get('login')] || form.get('password') !== `${form.get('login')}-password`)) {
      ctx.status = 403;
      ctx.body = 'wrong login or password';
      return;
    }
    ctx.req.body = body; // the provider's own parser takes a body read upstream from here
  }
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
