pub mod admin;
pub mod direct_uploads;
pub mod docs;
pub mod health;
mod json;
pub mod keys;
pub mod uploads;
pub mod usage;
pub mod videos;
