//! The status enums as PostgreSQL parameters and columns, in their one spelling: the columns
//! are CHECK-constrained text, so a query binds `FlowStatus::Ready` rather than writing
//! `'READY'`, and reads a status without parsing it by hand.

use std::error::Error;

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};

use crate::status::{EncodePath, FlowStatus, SessionStatus, UploadKind, VideoStatus};

type BoxError = Box<dyn Error + Sync + Send>;

macro_rules! text_column {
    ($($name:ident),+ $(,)?) => {$(
        impl ToSql for $name {
            fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as ToSql>::accepts(ty)
            }

            tokio_postgres::types::to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $name {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
                Ok(<&str as FromSql>::from_sql(ty, raw)?.parse()?)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }
    )+};
}

text_column!(
    VideoStatus,
    FlowStatus,
    SessionStatus,
    EncodePath,
    UploadKind
);
