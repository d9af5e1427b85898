//! Direct uploads: single-use tus creation URLs that need no key. `token` makes and reads the
//! URL's secret, `store` reads the rows (the uploader writes them), `origin` checks the one
//! browser origin a direct upload allows.

pub mod origin;
pub mod store;
pub mod token;

/// The path under which a direct upload's URL lives: `/v1/direct/<token>` for the creation,
/// `/v1/direct/<token>/<upload id>` for the upload it created.
pub const URL_PREFIX: &str = "/v1/direct";
