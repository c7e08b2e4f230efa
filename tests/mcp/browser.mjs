// A browser enough for the test sign-in pages (oidc-provider's development pages, Sluice's
// consent and connect pages): cookies by name and path (every host here is 127.0.0.1, and
// cookies do not tell ports apart), no automatic redirects, a cookie with Max-Age=0 removed.
const jar = new Map();

export async function go(target, form) {
  const u = new URL(target);
  const cookie = [...jar.entries()].filter(([k]) => u.pathname.startsWith(k.split('\0')[1])).map(([k, v]) => `${k.split('\0')[0]}=${v}`).join('; ');
  const init = { redirect: 'manual', headers: cookie ? { cookie } : {} };
  if (form) {
    init.method = 'POST';
    init.body = new URLSearchParams(form).toString();
    init.headers['content-type'] = 'application/x-www-form-urlencoded';
  }
  const r = await fetch(u, init);
  for (const c of r.headers.getSetCookie()) {
    const [pair, ...attrs] = c.split(';');
    const [k, ...v] = pair.split('=');
    const a = attrs.map((x) => x.trim().toLowerCase());
    const path = attrs.map((x) => x.trim()).find((x) => x.toLowerCase().startsWith('path='))?.slice(5) || '/';
    if (a.includes('max-age=0')) jar.delete(`${k.trim()}\0${path}`);
    else jar.set(`${k.trim()}\0${path}`, v.join('='));
  }
  return r;
}
