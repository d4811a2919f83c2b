variable "region" {
  description = "AWS region for the bucket, the image repository and the Ray nodes."
  type        = string
  default     = "us-west-2"
}

variable "bucket_name" {
  description = "Globally unique name of the runs bucket (runs live at s3://BUCKET/RUN_PREFIX/<run_id>/)."
  type        = string
}

variable "run_prefix" {
  description = "Key prefix that holds the runs; the Ray nodes may read and write under it and nowhere else."
  type        = string
  default     = "runs"
  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*$", var.run_prefix))
    error_message = "run_prefix must be one path segment without slashes, e.g. \"runs\"."
  }
}

variable "input_prefix" {
  description = "Key prefix that holds a run's inputs (census archives, prompt files); the Ray nodes may only read under it."
  type        = string
  default     = "inputs"
  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*$", var.input_prefix))
    error_message = "input_prefix must be one path segment without slashes, e.g. \"inputs\"."
  }
}

variable "cluster_name" {
  description = "Ray cluster_name from cluster/aws.yaml; the head may only stop or terminate instances tagged with it."
  type        = string
  default     = "persona-gen"
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept (a safety net against a bad run overwriting a good one)."
  type        = number
  default     = 30
}

variable "infrequent_access_days" {
  description = "Days after which finished run objects move to the Intelligent-Tiering storage class."
  type        = number
  default     = 30
}

variable "hf_token_parameter" {
  description = "SSM Parameter Store name (SecureString) holding a Hugging Face token for gated models; create it yourself, so the token never enters Terraform state."
  type        = string
  default     = "/persona-gen/hf-token"
}

variable "eks_oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider, for KubeRay pods (IRSA); empty skips the IRSA role."
  type        = string
  default     = ""
}

variable "eks_namespace" {
  description = "Kubernetes namespace of the persona-gen-ray service account (cluster/kuberay/serviceaccount.yaml)."
  type        = string
  default     = "default"
}
