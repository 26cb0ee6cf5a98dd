//! The simple query family: Query, RowDescription, DataRow, CommandComplete, EmptyQueryResponse,
//! ReadyForQuery.

use bytes::Bytes;

use super::ProtocolError;
use super::buf::{Frame, Reader};

pub fn query(sql: &str) -> Bytes {
    Frame::new(b'Q').cstr(sql).finish()
}

/// The SQL text of a Query body (lossy for non-UTF-8, which PostgreSQL would reject anyway).
pub fn decode_query(body: &[u8]) -> Result<&[u8], ProtocolError> {
    let mut r = Reader::new(body, "Query");
    let s = r.cbytes()?;
    r.end()?;
    Ok(s)
}

/// One RowDescription field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub table_oid: u32,
    pub column: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
    pub format: i16,
}

pub fn row_description(fields: &[Field]) -> Bytes {
    let mut f = Frame::new(b'T');
    f.i16(fields.len() as i16);
    for x in fields {
        f.cstr(&x.name)
            .u32(x.table_oid)
            .i16(x.column)
            .u32(x.type_oid)
            .i16(x.type_size)
            .i32(x.type_modifier)
            .i16(x.format);
    }
    f.finish()
}

pub fn decode_row_description(body: &[u8]) -> Result<Vec<Field>, ProtocolError> {
    let mut r = Reader::new(body, "RowDescription");
    let n = r.i16()?;
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n.max(0) {
        out.push(Field {
            name: r.cstr()?.to_owned(),
            table_oid: r.u32()?,
            column: r.i16()?,
            type_oid: r.u32()?,
            type_size: r.i16()?,
            type_modifier: r.i32()?,
            format: r.i16()?,
        });
    }
    r.end()?;
    Ok(out)
}

pub fn data_row(values: &[Option<&[u8]>]) -> Bytes {
    let mut f = Frame::new(b'D');
    f.i16(values.len() as i16);
    for v in values {
        match v {
            None => f.i32(-1),
            Some(b) => f.i32(b.len() as i32).bytes(b),
        };
    }
    f.finish()
}

pub fn decode_data_row(body: &[u8]) -> Result<Vec<Option<Vec<u8>>>, ProtocolError> {
    let mut r = Reader::new(body, "DataRow");
    let n = r.i16()?;
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n.max(0) {
        let len = r.i32()?;
        out.push(if len < 0 {
            None
        } else {
            Some(r.take(len as usize)?.to_vec())
        });
    }
    r.end()?;
    Ok(out)
}

pub fn command_complete(tag: &str) -> Bytes {
    Frame::new(b'C').cstr(tag).finish()
}

pub fn decode_command_complete(body: &[u8]) -> Result<&str, ProtocolError> {
    let mut r = Reader::new(body, "CommandComplete");
    let s = r.cstr()?;
    r.end()?;
    Ok(s)
}

/// Rows affected/returned per a command tag ("INSERT 0 5", "SELECT 3", "COPY 10").
pub fn rows_from_tag(tag: &str) -> Option<u64> {
    tag.rsplit(' ').next()?.parse().ok()
}

pub fn empty_query_response() -> Bytes {
    Frame::new(b'I').finish()
}

/// ReadyForQuery with transaction status `I`, `T` or `E`.
pub fn ready_for_query(status: u8) -> Bytes {
    Frame::new(b'Z').u8(status).finish()
}

pub fn decode_ready_for_query(body: &[u8]) -> Result<u8, ProtocolError> {
    let mut r = Reader::new(body, "ReadyForQuery");
    let s = r.u8()?;
    r.end()?;
    match s {
        b'I' | b'T' | b'E' => Ok(s),
        _ => Err(ProtocolError::malformed("ReadyForQuery")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_roundtrips() {
        let q = query("SELECT 1; SELECT 'ü'");
        assert_eq!(
            decode_query(&q[5..]).unwrap(),
            "SELECT 1; SELECT 'ü'".as_bytes()
        );
        let fields = vec![Field {
            name: "a".into(),
            table_oid: 1,
            column: 2,
            type_oid: 23,
            type_size: 4,
            type_modifier: -1,
            format: 0,
        }];
        let t = row_description(&fields);
        assert_eq!(decode_row_description(&t[5..]).unwrap(), fields);
        let d = data_row(&[Some(b"1"), None]);
        assert_eq!(
            decode_data_row(&d[5..]).unwrap(),
            vec![Some(b"1".to_vec()), None]
        );
        let c = command_complete("INSERT 0 5");
        assert_eq!(decode_command_complete(&c[5..]).unwrap(), "INSERT 0 5");
        assert_eq!(rows_from_tag("INSERT 0 5"), Some(5));
        assert_eq!(rows_from_tag("CREATE TABLE"), None);
        assert_eq!(&empty_query_response()[..], &[b'I', 0, 0, 0, 4]);
        let z = ready_for_query(b'T');
        assert_eq!(decode_ready_for_query(&z[5..]).unwrap(), b'T');
        assert!(decode_ready_for_query(b"X").is_err());
    }
}
