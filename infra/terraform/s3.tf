# The runs bucket: private, encrypted with its own KMS key, TLS only, versioned, and with
# lifecycle rules so abandoned multipart uploads and old versions do not pile up.

resource "aws_kms_key" "runs" {
  description             = "persona-gen runs bucket"
  enable_key_rotation     = true
  deletion_window_in_days = 30
}

resource "aws_kms_alias" "runs" {
  name          = "alias/persona-gen-runs"
  target_key_id = aws_kms_key.runs.key_id
}

resource "aws_s3_bucket" "runs" {
  bucket = var.bucket_name
}

resource "aws_s3_bucket_ownership_controls" "runs" {
  bucket = aws_s3_bucket.runs.id
  rule {
    # ACLs off: access is decided by IAM and the bucket policy alone.
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "runs" {
  bucket                  = aws_s3_bucket.runs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "runs" {
  bucket = aws_s3_bucket.runs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.runs.arn
    }
    # One data key per bucket rather than per object: far fewer KMS calls for many small parts.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "runs" {
  bucket = aws_s3_bucket.runs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "runs" {
  bucket = aws_s3_bucket.runs.id
  # Versioning must be on before noncurrent-version rules make sense.
  depends_on = [aws_s3_bucket_versioning.runs]

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    # A killed writer leaves parts that bill like objects but never show in a listing.
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
  }

  rule {
    id     = "tier-finished-runs"
    status = "Enabled"
    filter {
      prefix = "${var.run_prefix}/"
    }
    transition {
      days          = var.infrequent_access_days
      storage_class = "INTELLIGENT_TIERING"
    }
  }
}

data "aws_iam_policy_document" "runs_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.runs.arn,
      "${aws_s3_bucket.runs.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "runs" {
  bucket = aws_s3_bucket.runs.id
  policy = data.aws_iam_policy_document.runs_bucket.json
  # The public-access block must exist first, or S3 may briefly judge the policy public.
  depends_on = [aws_s3_bucket_public_access_block.runs]
}
