pub mod docs;
pub mod health;
pub mod uploads;
pub mod videos;
