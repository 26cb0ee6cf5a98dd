//! The server side of a client's authentication: SCRAM-SHA-256, md5 or trust.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Credential;
use super::md5;
use super::scram::{self, ScramSecret, ScramServer};
use crate::pg::config::AuthType;
use crate::pg::protocol::auth::{self as pauth, Authentication};
use crate::pg::protocol::{Decoder, ProtocolError, RawMessage};

/// Why a client failed to authenticate.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// Wrong password or unknown user (the client sees 28P01 either way).
    #[error("password authentication failed")]
    Rejected,
    #[error("client i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("client protocol: {0}")]
    Protocol(#[from] ProtocolError),
}

async fn read_password<S: AsyncRead + Unpin + ?Sized>(
    io: &mut S,
    dec: &mut Decoder,
) -> Result<RawMessage, AuthFailure> {
    loop {
        if let Some(m) = dec.decode()? {
            if m.tag != b'p' {
                return Err(ProtocolError::Unexpected(m.tag).into());
            }
            return Ok(m);
        }
        if io.read_buf(&mut dec.buf).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
}

/// Run the exchange. On success AuthenticationOk has been written (not flushed beyond the
/// stream's own buffering).
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    io: &mut S,
    dec: &mut Decoder,
    auth_type: AuthType,
    user: &str,
    cred: Option<Credential>,
) -> Result<(), AuthFailure> {
    match (auth_type, cred) {
        (AuthType::Trust, _) => {}
        (AuthType::Md5, Some(Credential::Plain(pw))) => {
            md5_exchange(io, dec, user, &md5::stored_hash(user, &pw)).await?
        }
        (AuthType::Md5, Some(Credential::Md5Hash(h))) => md5_exchange(io, dec, user, &h).await?,
        (AuthType::ScramSha256, Some(Credential::Md5Hash(_))) => {
            // A SCRAM client cannot be verified against an md5 hash; fail as PostgreSQL does.
            scram_exchange(
                io,
                dec,
                ScramSecret::from_password(&random_password()),
                false,
            )
            .await?
        }
        (_, Some(Credential::Plain(pw))) => {
            scram_exchange(io, dec, ScramSecret::from_password(&pw), true).await?
        }
        (_, Some(Credential::Scram(secret))) => scram_exchange(io, dec, secret, true).await?,
        (AuthType::Md5, None) => {
            md5_exchange(io, dec, user, &md5::stored_hash(user, &random_password())).await?;
            return Err(AuthFailure::Rejected);
        }
        (AuthType::ScramSha256, None) => {
            // Unknown user: run the exchange against a random secret so the answer does not
            // reveal which users exist.
            scram_exchange(
                io,
                dec,
                ScramSecret::from_password(&random_password()),
                false,
            )
            .await?
        }
    }
    io.write_all(&Authentication::Ok.encode()).await?;
    Ok(())
}

fn random_password() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

async fn md5_exchange<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    io: &mut S,
    dec: &mut Decoder,
    _user: &str,
    stored: &str,
) -> Result<(), AuthFailure> {
    let salt: [u8; 4] = rand::random();
    io.write_all(&Authentication::Md5Password { salt }.encode())
        .await?;
    io.flush().await?;
    let m = read_password(io, dec).await?;
    let got = pauth::decode_password(m.body())?;
    let want = md5::response_from_stored(stored, &salt);
    if super::ct_eq(&got, want.as_bytes()) {
        Ok(())
    } else {
        Err(AuthFailure::Rejected)
    }
}

async fn scram_exchange<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    io: &mut S,
    dec: &mut Decoder,
    secret: ScramSecret,
    can_succeed: bool,
) -> Result<(), AuthFailure> {
    io.write_all(
        &Authentication::Sasl {
            mechanisms: vec![scram::MECHANISM.into()],
        }
        .encode(),
    )
    .await?;
    io.flush().await?;
    let m = read_password(io, dec).await?;
    let (mech, first) = pauth::decode_sasl_initial_response(m.body())?;
    if mech != scram::MECHANISM {
        return Err(AuthFailure::Rejected);
    }
    let (server, server_first) =
        ScramServer::start(secret, &first).map_err(|_| AuthFailure::Rejected)?;
    io.write_all(&Authentication::SaslContinue(server_first.into_bytes()).encode())
        .await?;
    io.flush().await?;
    let m = read_password(io, dec).await?;
    let server_final = server.finish(m.body()).map_err(|_| AuthFailure::Rejected)?;
    if !can_succeed {
        return Err(AuthFailure::Rejected);
    }
    io.write_all(&Authentication::SaslFinal(server_final.into_bytes()).encode())
        .await?;
    Ok(())
}
