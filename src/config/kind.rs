//! The resource kinds that both the config file declares and the control plane's store holds,
//! as one registry: how a stored document joins the file's resources, and how an error in a
//! merged list is traced back to the stored document. A new kind is its wire type, its `Kind`
//! impl and one line in [`KINDS`].

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::stored::Resource;
use super::{wire, ConfigError};

pub trait Kind: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The store's name for the kind (`provider`).
    const KIND: &'static str;
    /// The config file's list of them (`providers`).
    const LIST: &'static str;
    /// The resource's name (unique within its kind).
    fn name(&self) -> String;
    fn list(config: &wire::Config) -> &Vec<Self>;
    fn list_mut(config: &mut wire::Config) -> &mut Vec<Self>;
    /// Why this document may not come from the store (fields only the operator's file may
    /// set); the paths are `store:KIND/NAME.field`.
    fn stored_problems(&self) -> Vec<ConfigError> {
        Vec::new()
    }
}

/// A registered kind, with its type erased.
pub struct Registered {
    pub kind: &'static str,
    pub list: &'static str,
    merge: fn(&mut wire::Config, &Resource, &mut Vec<ConfigError>),
    name_at: fn(&wire::Config, usize) -> Option<String>,
    file_len: fn(&wire::Config) -> usize,
}

const fn register<T: Kind>() -> Registered {
    Registered {
        kind: T::KIND,
        list: T::LIST,
        merge: merge_one::<T>,
        name_at: |config, i| T::list(config).get(i).map(T::name),
        file_len: |config| T::list(config).len(),
    }
}

/// Every kind the store and the file share.
pub const KINDS: &[Registered] = &[
    register::<wire::Provider>(),
    register::<wire::Route>(),
    register::<wire::Issuer>(),
    register::<wire::Token>(),
    register::<wire::Owner>(),
    register::<wire::OAuthProvider>(),
    register::<wire::McpServer>(),
    register::<wire::Agent>(),
    register::<wire::Limit>(),
    register::<wire::Budget>(),
];

fn merge_one<T: Kind>(config: &mut wire::Config, r: &Resource, errors: &mut Vec<ConfigError>) {
    match serde_json::from_value::<T>(r.body.clone()) {
        Ok(doc) => {
            errors.extend(doc.stored_problems());
            T::list_mut(config).push(doc);
        }
        Err(e) => errors.push(ConfigError::at(
            format!("store.{}.{}", r.kind, r.name),
            e.to_string(),
        )),
    }
}

/// Appends the store's resources to `config` (the file's), reporting documents that do not fit
/// their type, and returns the built-in issuer's state apart. Names must not clash with the
/// file's: the build reports duplicates.
pub fn merge(
    config: &mut wire::Config,
    resources: &[Resource],
) -> (Vec<ConfigError>, super::stored::IssuerState) {
    let mut errors = Vec::new();
    let mut issuer = super::stored::IssuerState::default();
    for r in resources {
        if let Some(k) = KINDS.iter().find(|k| k.kind == r.kind) {
            (k.merge)(config, r, &mut errors);
        } else if r.kind == super::stored::SIGNING_KEY {
            issuer.signing_keys.push(r.body["jwk"].clone());
        } else if r.kind == super::stored::APP {
            issuer.live_apps.push(r.name.clone());
        } else if r.kind == super::stored::REVOKED {
            use super::stored::{REVOKED_CLIENT_PREFIX, SIGNED_OUT_PREFIX};
            if let Some(principal) = r.name.strip_prefix(SIGNED_OUT_PREFIX) {
                let since = r.body["since_ms"].as_u64().unwrap_or(u64::MAX);
                issuer.signed_out.push((principal.to_owned(), since));
            } else if let Some(client) = r.name.strip_prefix(REVOKED_CLIENT_PREFIX) {
                issuer.revoked_clients.push(client.to_owned());
            } else {
                issuer.revoked_tokens.push(r.name.clone());
            }
        }
    }
    (errors, issuer)
}

/// `providers[7].keys[0]` → `store:provider/NAME.keys[0]` when index 7 is past the file's own
/// providers (the rest came from the store).
pub fn stored_path(path: &str, file: &wire::Config, merged: &wire::Config) -> Option<String> {
    let (list, rest) = path.split_once('[')?;
    let (index, tail) = rest.split_once(']')?;
    let i: usize = index.parse().ok()?;
    let k = KINDS.iter().find(|k| k.list == list)?;
    if i < (k.file_len)(file) {
        return None;
    }
    Some(format!(
        "store:{}/{}{tail}",
        k.kind,
        (k.name_at)(merged, i)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_registered_once_with_its_list() {
        let config = crate::config::parse("{}").unwrap();
        for (i, k) in KINDS.iter().enumerate() {
            assert!(KINDS[i + 1..]
                .iter()
                .all(|o| o.kind != k.kind && o.list != k.list));
            assert_eq!((k.file_len)(&config), 0, "{}", k.list);
        }
    }
}
