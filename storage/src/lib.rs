//! keel-storage: where table data lives besides the local file system. An
//! `s3://bucket/key` address is an object in S3 (or anything speaking its
//! API), reached through the `object_store` crate with credentials and
//! endpoint from the standard variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP`).
//!
//! - [`S3Url`]: parsing an address; [`is_remote`].
//! - [`list`]: the objects a glob names (the catalog's file listing).
//! - [`reader`]: an object for the async Parquet reader (range reads).
//! - [`ObjectWriter`]: a `Write` that uploads in parts and makes the
//!   object visible only when finished (a multipart upload completed at
//!   the end, aborted on failure).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use std::ops::Range;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use tokio::runtime::Handle;

/// Whether `path` names an object store address rather than a local path.
pub fn is_remote(path: &str) -> bool {
    path.starts_with("s3://")
}

/// `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub key: String,
}

impl S3Url {
    pub fn parse(url: &str) -> Result<S3Url, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url} is not an s3:// address"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url} names no bucket (expected s3://bucket/key)"));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.trim_start_matches('/').to_string(),
        })
    }

    pub fn to_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// The bucket's store (built once per bucket per process).
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>, String> {
        static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
        let mut stores = STORES.get_or_init(Default::default).lock().expect("stores");
        if let Some(s) = stores.get(&self.bucket) {
            return Ok(s.clone());
        }
        let store: Arc<dyn ObjectStore> = Arc::new(
            AmazonS3Builder::from_env()
                .with_bucket_name(&self.bucket)
                .build()
                .map_err(|e| format!("cannot set up S3 for bucket {}: {e}", self.bucket))?,
        );
        stores.insert(self.bucket.clone(), store.clone());
        Ok(store)
    }

    fn path(&self) -> ObjectPath {
        ObjectPath::from(self.key.as_str())
    }
}

/// One object a listing found.
#[derive(Debug, Clone)]
pub struct Listed {
    pub url: String,
    pub size: u64,
}

/// The objects `pattern` names: a key, a prefix ending in `/` (everything
/// ending `.parquet` under it) or a glob (`*`, `?`, `[…]`, `**`), sorted by
/// key. Hidden objects (a name starting with `.`) are skipped. Runs on
/// `runtime` (call from a blocking thread).
pub fn list(pattern: &str, runtime: &Handle) -> Result<Vec<Listed>, String> {
    let url = S3Url::parse(pattern)?;
    let store = url.store()?;
    let glob_at = url.key.find(['*', '?', '[']);
    // List under the longest literal directory prefix of the key.
    let prefix = match glob_at {
        Some(i) => url.key[..i].rsplit_once('/').map_or("", |(d, _)| d),
        None => url.key.trim_end_matches('/'),
    };
    let matcher = match glob_at {
        Some(_) => Some(
            glob::Pattern::new(&url.key)
                .map_err(|e| format!("invalid pattern {pattern:?}: {e}"))?,
        ),
        None => None,
    };
    let listed: Vec<object_store::ObjectMeta> = runtime
        .block_on(
            store
                .list(Some(&ObjectPath::from(prefix)))
                .try_collect::<Vec<_>>(),
        )
        .map_err(|e| format!("cannot list {pattern}: {e}"))?;
    let mut out: Vec<Listed> = listed
        .into_iter()
        .filter(|o| {
            let key = o.location.as_ref();
            let hidden = o.location.filename().is_some_and(|n| n.starts_with('.'));
            let wanted = match &matcher {
                Some(m) => m.matches(key),
                // The key itself, or the Parquet files under it as a directory.
                None => key == url.key || key.ends_with(".parquet"),
            };
            wanted && !hidden
        })
        .map(|o| Listed {
            url: format!("s3://{}/{}", url.bucket, o.location),
            size: o.size,
        })
        .collect();
    out.sort_by(|a, b| a.url.cmp(&b.url));
    Ok(out)
}

/// An object for the async Parquet reader: footer and column chunks are
/// range reads. `size` (from a listing) saves a request.
pub fn reader(url: &str, size: Option<u64>) -> Result<ObjectFile, String> {
    let url = S3Url::parse(url)?;
    Ok(ObjectFile {
        store: url.store()?,
        path: url.path(),
        size,
    })
}

/// A Parquet file in an object store, read by ranges.
pub struct ObjectFile {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    size: Option<u64>,
}

/// Bytes fetched from the end at first: most footers fit, saving a round trip.
const FOOTER_HINT: usize = 64 << 10;

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl MetadataSuffixFetch for &mut ObjectFile {
    fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let options = GetOptions {
            range: Some(GetRange::Suffix(suffix as u64)),
            ..Default::default()
        };
        async move {
            let got = self
                .store
                .get_opts(&self.path, options)
                .await
                .map_err(external)?;
            got.bytes().await.map_err(external)
        }
        .boxed()
    }
}

impl AsyncFileReader for ObjectFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(external)
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let reader = ParquetMetaDataReader::new().with_prefetch_hint(Some(FOOTER_HINT));
            let metadata = match self.size {
                Some(size) => reader.load_and_finish(self, size).await?,
                None => reader.load_via_suffix_and_finish(self).await?,
            };
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Uploads what is written to it as a multipart upload: parts go up as
/// they fill (at most a few in flight), and the object appears only when
/// [`ObjectWriter::finish`] completes the upload; [`ObjectWriter::abort`]
/// (or a failure) leaves nothing behind. Used from a blocking thread.
pub struct ObjectWriter {
    upload: Option<WriteMultipart>,
    runtime: Handle,
    url: String,
    written: u64,
}

/// Parts in flight at once, each of the upload's chunk size (5 MiB).
const PARTS_IN_FLIGHT: usize = 4;

impl ObjectWriter {
    pub fn create(url: &str, runtime: Handle) -> Result<ObjectWriter, String> {
        let parsed = S3Url::parse(url)?;
        let store = parsed.store()?;
        let upload = runtime
            .block_on(store.put_multipart(&parsed.path()))
            .map_err(|e| format!("cannot start uploading {url}: {e}"))?;
        Ok(ObjectWriter {
            upload: Some(WriteMultipart::new(upload)),
            runtime,
            url: url.to_string(),
            written: 0,
        })
    }

    /// Completes the upload: the object is visible from now on. Returns its size.
    pub fn finish(&mut self) -> Result<u64, String> {
        let upload = self
            .upload
            .take()
            .ok_or_else(|| format!("the upload of {} is already over", self.url))?;
        self.runtime
            .block_on(upload.finish())
            .map_err(|e| format!("cannot complete the upload of {}: {e}", self.url))?;
        Ok(self.written)
    }

    /// Abandons the upload: nothing appears.
    pub fn abort(mut self) {
        if let Some(upload) = self.upload.take() {
            let _ = self.runtime.block_on(upload.abort());
        }
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let upload = self
            .upload
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the upload is finished"))?;
        self.runtime
            .block_on(upload.wait_for_capacity(PARTS_IN_FLIGHT))
            .map_err(|e| std::io::Error::other(format!("uploading {}: {e}", self.url)))?;
        upload.write(buf);
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWriter {
    /// An upload neither finished nor aborted (a failed task) is aborted.
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            let _ = self.runtime.block_on(upload.abort());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_into_bucket_and_key() {
        let u = S3Url::parse("s3://bucket/a/b/*.parquet").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.key.as_str()),
            ("bucket", "a/b/*.parquet")
        );
        assert_eq!(S3Url::parse("s3://b").unwrap().key, "");
        assert!(S3Url::parse("s3:///key").unwrap_err().contains("no bucket"));
        assert!(S3Url::parse("/local").is_err());
        assert!(is_remote("s3://x/y") && !is_remote("/data/s3://"));
    }
}
