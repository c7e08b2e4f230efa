//! What the APIs that carry a credential in the query or the model in the path need: the
//! query parameters stripped before the upstream (`push_query`) and the model a path names
//! (`model_in_path`).

use crate::auth;

/// Query parameters an API takes a credential from: Google's (each also with a `$` in front)
/// and Azure's.
fn query_credentials(kind: crate::config::ProviderKind) -> &'static [&'static str] {
    match kind {
        crate::config::ProviderKind::Gemini => &["key", "access_token", "oauth_token"],
        crate::config::ProviderKind::AzureOpenAi => &["subscription-key", "api-key"],
        _ => &[],
    }
}

/// Appends the query for the upstream: without the API's credential parameters when Sluice
/// sends a credential of its choosing, and never with a parameter whose value is a Sluice
/// token (a client passing its own key may still have put one there).
pub(super) fn push_query(
    target: &mut String,
    q: &str,
    kind: crate::config::ProviderKind,
    client_key: bool,
) {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let credentials = if client_key {
        &[][..]
    } else {
        query_credentials(kind)
    };
    // Most queries hold neither a credential parameter nor an (encoded) Sluice token: copied
    // as they are, with no decoding.
    let plain = !q.contains('%') && !q.contains(auth::opaque::PREFIX);
    if plain && credentials.iter().all(|c| !q.contains(c)) {
        target.push('?');
        target.push_str(q);
        return;
    }
    let kept: Vec<&str> = q
        .split('&')
        .filter(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            let name = decode(name);
            !credentials.contains(&name.trim_start_matches('$'))
                && !auth::token_format::holds_token(&decode(value))
        })
        .collect();
    if !kept.is_empty() {
        target.push('?');
        target.push_str(&kept.join("&"));
    }
}

/// The model an API names in its path: Gemini's `…/models/{model}:{method}`, an Azure
/// OpenAI deployment's `…/deployments/{deployment}/…`.
/// Percent-decoded, as the upstream reads it (`%67emini-2.5-pro` is `gemini-2.5-pro`, and is
/// priced so). A path of such an API whose model cannot be read (another collection, an
/// overlong or undecodable name) is `UNREAD`: priced at the default or the dearest price, never
/// at none.
pub fn model_in_path(kind: crate::config::ProviderKind, path: &str) -> Option<String> {
    use crate::config::ProviderKind;
    let marker = match kind {
        ProviderKind::Gemini => "/models/",
        ProviderKind::AzureOpenAi => "/deployments/",
        _ => return None,
    };
    let unread = || Some(crate::audit::scan::UNREAD.to_owned());
    let Some((_, rest)) = path.split_once(marker) else {
        // Azure's v1 API names the model in the body; Gemini's always in the path.
        return (kind == ProviderKind::Gemini).then(unread).flatten();
    };
    let segment = rest.split([':', '/', ';']).next().unwrap_or("");
    let Ok(model) = percent_encoding::percent_decode_str(segment).decode_utf8() else {
        return unread();
    };
    let readable = !model.is_empty()
        && model.len() <= 128
        && !model.contains(['/', ':', ';', '%'])
        && !model.chars().any(char::is_control);
    if readable {
        Some(model.into_owned())
    } else {
        unread()
    }
}
