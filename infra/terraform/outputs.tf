output "runs_uri" {
  description = "Pass as --output to `persona-gen run` (or run.output in a config)."
  value       = "s3://${aws_s3_bucket.runs.bucket}/${var.run_prefix}"
}

output "inputs_uri" {
  description = "Stage census archives and prompt files here (census.sources, prompts.source); the nodes may read it."
  value       = "s3://${aws_s3_bucket.runs.bucket}/${var.input_prefix}"
}

output "bucket" {
  value = aws_s3_bucket.runs.bucket
}

output "kms_key_arn" {
  value = aws_kms_key.runs.arn
}

output "image_repository_url" {
  description = "Tag and push infra/Dockerfile's image here; cluster/aws.yaml and the KubeRay manifests name it."
  value       = aws_ecr_repository.image.repository_url
}

output "head_instance_profile" {
  value = aws_iam_instance_profile.head.name
}

output "worker_instance_profile" {
  value = aws_iam_instance_profile.worker.name
}

output "irsa_role_arn" {
  description = "Annotate cluster/kuberay/serviceaccount.yaml with this ARN (empty without eks_oidc_provider_arn)."
  value       = try(aws_iam_role.irsa[0].arn, "")
}
