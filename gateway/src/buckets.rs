//! Bucket operations: ListBuckets (only the buckets the caller holds a right on, paginated),
//! CreateBucket, HeadBucket, GetBucketLocation, DeleteBucket, and the small calls clients make
//! before they upload: versioning (never enabled), ACLs (answered as MinIO does: a private
//! owner ACL; only `private` accepted), ownership controls (BucketOwnerEnforced).

use baobab::meta::buckets::delete_bucket;
use baobab::meta::request::{CreateBucket, ListBuckets, SetBucketCors, SetBucketTags};
use baobab::meta::{Refused, WriteRequest};
use baobab::types::BucketId;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use crate::error::{from_meta, invalid_argument, no_such_bucket, unexpected};
use crate::headers::{now_ms, tag_set, tags_of, timestamp};
use crate::s3::{caller, Gateway};

/// Buckets per ListBuckets page at most (as S3).
const MAX_BUCKETS_PER_PAGE: usize = 10_000;

fn owner(id: &str) -> Owner {
    Owner {
        display_name: Some(id.to_string()),
        id: Some(id.to_string()),
    }
}

fn private_acl(owner_id: &str) -> (Option<Owner>, Option<Vec<Grant>>) {
    let grant = Grant {
        grantee: Some(Grantee {
            display_name: Some(owner_id.to_string()),
            id: Some(owner_id.to_string()),
            type_: Type::from_static(Type::CANONICAL_USER),
            email_address: None,
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    };
    (Some(owner(owner_id)), Some(vec![grant]))
}

impl Gateway {
    pub(crate) async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let key_id = caller(&req)?;
        let input = req.input;
        let buckets = self
            .objects
            .meta
            .ask(ListBuckets)
            .await
            .map_err(from_meta)?
            .map_err(|_| unexpected("ListBuckets"))?;
        let max = match input.max_buckets {
            Some(m) if m < 1 || m as usize > MAX_BUCKETS_PER_PAGE => {
                return Err(invalid_argument("max-buckets must be between 1 and 10000"))
            }
            Some(m) => m as usize,
            None => MAX_BUCKETS_PER_PAGE,
        };
        let after = match input.continuation_token.as_deref() {
            Some(t) => Some(
                hex::decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        invalid_argument("The continuation token provided is incorrect")
                    })?,
            ),
            None => None,
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let visible: Vec<_> = buckets
            .into_iter()
            .filter(|b| b.rights_of(&key_id).any())
            .filter(|b| b.name.starts_with(&prefix))
            .filter(|b| after.as_deref().is_none_or(|a| b.name.as_str() > a))
            .collect();
        let truncated = visible.len() > max;
        let page: Vec<Bucket> = visible
            .iter()
            .take(max)
            .map(|b| Bucket {
                name: Some(b.name.clone()),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: Some(self.region.clone()),
            })
            .collect();
        let next = truncated
            .then(|| {
                page.last()
                    .and_then(|b| b.name.as_deref())
                    .map(|n| hex::encode(n.as_bytes()))
            })
            .flatten();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(page),
            owner: Some(owner(&key_id)),
            continuation_token: next,
            prefix: input.prefix,
        }))
    }

    pub(crate) async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let key_id = caller(&req)?;
        let name = req.input.bucket.clone();
        if let Some(acl) = &req.input.acl {
            if acl.as_str() != BucketCannedACL::PRIVATE {
                return Err(s3_error!(
                    AccessControlListNotSupported,
                    "The bucket does not allow ACLs"
                ));
            }
        }
        let create = CreateBucket {
            name: name.clone(),
            id: BucketId(rand::random()),
            owner: key_id,
            created_ms: now_ms(),
        };
        let answer = self.objects.meta.send(create).await.map_err(from_meta)?;
        self.access.forget(&name);
        match answer {
            Ok(()) => {
                tracing::info!(bucket = %name, "bucket created");
                Ok(S3Response::new(CreateBucketOutput {
                    location: Some(format!("/{name}")),
                }))
            }
            Err(Refused::BucketAlreadyOwnedByYou) => Err(s3_error!(
                BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it."
            )),
            Err(Refused::BucketAlreadyExists) => Err(s3_error!(BucketAlreadyExists)),
            Err(_) => Err(unexpected("CreateBucket")),
        }
    }

    pub(crate) async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.access.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.region.clone()),
            ..Default::default()
        }))
    }

    pub(crate) async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.access.bucket(&req.input.bucket).await?;
        // As AWS: us-east-1 is reported as an empty location constraint.
        let location = (self.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: location,
        }))
    }

    pub(crate) async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let name = req.input.bucket.clone();
        let answer = delete_bucket(&self.objects.meta, &name)
            .await
            .map_err(from_meta)?;
        self.access.forget(&name);
        match answer {
            Ok(id) => {
                tracing::info!(bucket = %name, id = id.0, "bucket deleted");
                Ok(S3Response::new(DeleteBucketOutput {}))
            }
            Err(Refused::NoSuchBucket) => Err(no_such_bucket(&name)),
            Err(Refused::BucketNotEmpty) => Err(s3_error!(
                BucketNotEmpty,
                "The bucket you tried to delete is not empty"
            )),
            Err(_) => Err(unexpected("DeleteBucket")),
        }
    }

    pub(crate) async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.access.bucket(&req.input.bucket).await?;
        // Versioning was never enabled: AWS answers with an empty configuration.
        Ok(S3Response::new(GetBucketVersioningOutput::default()))
    }

    pub(crate) async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let b = self.access.bucket(&req.input.bucket).await?;
        let (owner, grants) = private_acl(&b.owner);
        Ok(S3Response::new(GetBucketAclOutput { owner, grants }))
    }

    pub(crate) async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        self.access.bucket(&req.input.bucket).await?;
        match &req.input.acl {
            Some(acl) if acl.as_str() == BucketCannedACL::PRIVATE => {
                Ok(S3Response::new(PutBucketAclOutput::default()))
            }
            _ => Err(s3_error!(NotImplemented, "Only the 'private' canned ACL is supported; use bucket permissions (baobab bucket allow)")),
        }
    }

    pub(crate) async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let b = self.access.bucket(&req.input.bucket).await?;
        self.objects
            .head(b.id, &req.input.key)
            .await
            .map_err(|e| crate::error::from_object(e, &req.input.bucket))?;
        let (owner, grants) = private_acl(&b.owner);
        Ok(S3Response::new(GetObjectAclOutput {
            owner,
            grants,
            ..Default::default()
        }))
    }

    pub(crate) async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        self.objects
            .head(self.bucket_id(&req.input.bucket).await?, &req.input.key)
            .await
            .map_err(|e| crate::error::from_object(e, &req.input.bucket))?;
        match &req.input.acl {
            Some(acl) if acl.as_str() == ObjectCannedACL::PRIVATE => {
                Ok(S3Response::new(PutObjectAclOutput::default()))
            }
            _ => Err(s3_error!(
                NotImplemented,
                "Only the 'private' canned ACL is supported"
            )),
        }
    }

    pub(crate) async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        self.access.bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketOwnershipControlsOutput {
            ownership_controls: Some(OwnershipControls {
                rules: vec![OwnershipControlsRule {
                    object_ownership: ObjectOwnership::from_static(
                        ObjectOwnership::BUCKET_OWNER_ENFORCED,
                    ),
                }],
            }),
        }))
    }
}

/// At most this many CORS rules per bucket (as S3).
const MAX_CORS_RULES: usize = 100;
/// A CORS configuration's size at most, counted over its strings (as S3's 64 KB).
const MAX_CORS_CONFIG_BYTES: usize = 64 * 1024;
/// At most this many tags per bucket (as S3).
const MAX_BUCKET_TAGS: usize = 50;

impl Gateway {
    async fn set_bucket(&self, change: impl WriteRequest, bucket: &str) -> S3Result<()> {
        let answer = self.objects.meta.send(change).await.map_err(from_meta)?;
        self.access.forget(bucket);
        match answer {
            Ok(()) => Ok(()),
            Err(Refused::NoSuchBucket) => Err(no_such_bucket(bucket)),
            Err(_) => Err(unexpected("bucket settings")),
        }
    }

    pub(crate) async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let input = req.input;
        let rules = input.cors_configuration.cors_rules;
        if rules.is_empty() || rules.len() > MAX_CORS_RULES {
            return Err(s3_error!(
                MalformedXML,
                "A CORS configuration has 1 to 100 rules"
            ));
        }
        let mut out = Vec::with_capacity(rules.len());
        for r in rules {
            let methods: Vec<String> = r.allowed_methods.into_iter().collect();
            if let Some(bad) = methods
                .iter()
                .find(|m| !matches!(m.as_str(), "GET" | "PUT" | "POST" | "DELETE" | "HEAD"))
            {
                return Err(invalid_argument(format!(
                    "Found unsupported HTTP method in CORS config. Unsupported method is {bad}"
                )));
            }
            let origins: Vec<String> = r.allowed_origins.into_iter().collect();
            if origins.is_empty() || methods.is_empty() {
                return Err(s3_error!(
                    MalformedXML,
                    "A CORS rule needs AllowedOrigin and AllowedMethod"
                ));
            }
            if origins
                .iter()
                .chain(r.allowed_headers.iter().flatten())
                .any(|p| p.matches('*').count() > 1)
            {
                return Err(invalid_argument(
                    "An origin or header pattern may contain at most one wildcard",
                ));
            }
            out.push(baobab::meta::CorsRule {
                id: r.id,
                allowed_origins: origins,
                allowed_methods: methods,
                allowed_headers: r.allowed_headers.unwrap_or_default(),
                expose_headers: r.expose_headers.unwrap_or_default(),
                max_age_secs: r.max_age_seconds,
            });
        }
        let size: usize = out
            .iter()
            .flat_map(|r| {
                r.allowed_origins
                    .iter()
                    .chain(&r.allowed_methods)
                    .chain(&r.allowed_headers)
                    .chain(&r.expose_headers)
                    .chain(r.id.iter())
            })
            .map(String::len)
            .sum();
        if size > MAX_CORS_CONFIG_BYTES {
            return Err(s3_error!(
                MalformedXML,
                "The CORS configuration is larger than 64 KB"
            ));
        }
        self.set_bucket(
            SetBucketCors {
                bucket: input.bucket.clone(),
                rules: out,
            },
            &input.bucket,
        )
        .await?;
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    pub(crate) async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let b = self.access.bucket(&req.input.bucket).await?;
        if b.cors.is_empty() {
            return Err(s3_error!(
                NoSuchCORSConfiguration,
                "The CORS configuration does not exist"
            ));
        }
        let rules = b
            .cors
            .iter()
            .cloned()
            .map(|r| CORSRule {
                id: r.id,
                allowed_origins: r.allowed_origins,
                allowed_methods: r.allowed_methods,
                allowed_headers: (!r.allowed_headers.is_empty()).then_some(r.allowed_headers),
                expose_headers: (!r.expose_headers.is_empty()).then_some(r.expose_headers),
                max_age_seconds: r.max_age_secs,
            })
            .collect();
        Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(rules),
        }))
    }

    pub(crate) async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let bucket = req.input.bucket;
        self.set_bucket(
            SetBucketCors {
                bucket: bucket.clone(),
                rules: Vec::new(),
            },
            &bucket,
        )
        .await?;
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }

    pub(crate) async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let input = req.input;
        let tags = tags_of(input.tagging.tag_set, MAX_BUCKET_TAGS)?;
        self.set_bucket(
            SetBucketTags {
                bucket: input.bucket.clone(),
                tags,
            },
            &input.bucket,
        )
        .await?;
        Ok(S3Response::new(PutBucketTaggingOutput::default()))
    }

    pub(crate) async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let b = self.access.bucket(&req.input.bucket).await?;
        if b.tags.is_empty() {
            return Err(s3_error!(NoSuchTagSet, "The TagSet does not exist"));
        }
        Ok(S3Response::new(GetBucketTaggingOutput {
            tag_set: tag_set(b.tags.clone()),
        }))
    }

    pub(crate) async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        let bucket = req.input.bucket;
        self.set_bucket(
            SetBucketTags {
                bucket: bucket.clone(),
                tags: Default::default(),
            },
            &bucket,
        )
        .await?;
        Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
    }
}
