# Least privilege for the Ray nodes. Three policies:
#   runs_access      read/write objects under s3://BUCKET/RUN_PREFIX/, read-only under
#                    s3://BUCKET/INPUT_PREFIX/ (census archives, prompt files), nothing else
#                    (head, workers, IRSA)
#   node_bootstrap   pull the image from ECR, read the optional Hugging Face token (EC2 nodes)
#   autoscaler       launch/stop/terminate this cluster's workers (launcher head only)

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "runs_access" {
  statement {
    sid     = "ListRunPrefixOnly"
    effect  = "Allow"
    actions = ["s3:ListBucket"]
    resources = [
      aws_s3_bucket.runs.arn,
    ]
    # IfExists: HeadBucket (pyarrow and `persona-gen storage check` send it) carries no prefix
    # and must pass; any listing that names a prefix must stay under the run or input prefix
    # (the census reader lists an input folder to find its csv_p*.zip archives).
    condition {
      test     = "StringLikeIfExists"
      variable = "s3:prefix"
      values = [
        var.run_prefix,
        "${var.run_prefix}/*",
        var.input_prefix,
        "${var.input_prefix}/*",
      ]
    }
  }

  statement {
    sid     = "ReadInputObjects"
    effect  = "Allow"
    actions = ["s3:GetObject"]
    # Inputs are staged once by a person (README, "Running on a cluster"); jobs only read them.
    resources = [
      "${aws_s3_bucket.runs.arn}/${var.input_prefix}/*",
    ]
  }

  statement {
    sid    = "ReadWriteRunObjects"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = [
      "${aws_s3_bucket.runs.arn}/${var.run_prefix}/*",
    ]
  }

  statement {
    sid    = "UseRunsKeyThroughS3"
    effect = "Allow"
    actions = [
      "kms:Decrypt",
      "kms:GenerateDataKey",
    ]
    resources = [
      aws_kms_key.runs.arn,
    ]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "node_bootstrap" {
  statement {
    sid       = "EcrLogin"
    effect    = "Allow"
    actions   = ["ecr:GetAuthorizationToken"]
    # GetAuthorizationToken has no resource-level permissions: AWS requires "*".
    resources = ["*"]
  }

  statement {
    sid    = "PullProjectImage"
    effect = "Allow"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.image.arn]
  }

  statement {
    sid     = "ReadHuggingFaceToken"
    effect  = "Allow"
    actions = ["ssm:GetParameter"]
    resources = [
      "arn:aws:ssm:${var.region}:${data.aws_caller_identity.current.account_id}:parameter${var.hf_token_parameter}",
    ]
  }
}

data "aws_iam_policy_document" "autoscaler" {
  statement {
    sid    = "Describe"
    effect = "Allow"
    actions = [
      "ec2:DescribeInstances",
      "ec2:DescribeImages",
      "ec2:DescribeSubnets",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeInstanceTypes",
    ]
    # EC2 Describe calls have no resource-level permissions.
    resources = ["*"]
  }

  statement {
    sid       = "LaunchWorkersInRegion"
    effect    = "Allow"
    actions   = ["ec2:RunInstances"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [var.region]
    }
  }

  statement {
    sid       = "TagAtLaunch"
    effect    = "Allow"
    actions   = ["ec2:CreateTags"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }

  statement {
    sid    = "ManageOwnWorkers"
    effect = "Allow"
    actions = [
      "ec2:CreateTags",
      "ec2:StartInstances",
      "ec2:StopInstances",
      "ec2:TerminateInstances",
    ]
    resources = ["arn:aws:ec2:${var.region}:${data.aws_caller_identity.current.account_id}:instance/*"]
    # Ray tags every node it launches with ray-cluster-name; nothing else may be touched.
    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/ray-cluster-name"
      values   = [var.cluster_name]
    }
  }

  statement {
    sid       = "PassWorkerRoleOnly"
    effect    = "Allow"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.worker.arn]
  }
}

resource "aws_iam_policy" "runs_access" {
  name   = "persona-gen-runs-access"
  policy = data.aws_iam_policy_document.runs_access.json
}

resource "aws_iam_policy" "node_bootstrap" {
  name   = "persona-gen-node-bootstrap"
  policy = data.aws_iam_policy_document.node_bootstrap.json
}

resource "aws_iam_policy" "autoscaler" {
  name   = "persona-gen-ray-autoscaler"
  policy = data.aws_iam_policy_document.autoscaler.json
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "head" {
  name               = "persona-gen-ray-head"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role" "worker" {
  name               = "persona-gen-ray-worker"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "head_runs" {
  role       = aws_iam_role.head.name
  policy_arn = aws_iam_policy.runs_access.arn
}

resource "aws_iam_role_policy_attachment" "head_bootstrap" {
  role       = aws_iam_role.head.name
  policy_arn = aws_iam_policy.node_bootstrap.arn
}

resource "aws_iam_role_policy_attachment" "head_autoscaler" {
  role       = aws_iam_role.head.name
  policy_arn = aws_iam_policy.autoscaler.arn
}

resource "aws_iam_role_policy_attachment" "worker_runs" {
  role       = aws_iam_role.worker.name
  policy_arn = aws_iam_policy.runs_access.arn
}

resource "aws_iam_role_policy_attachment" "worker_bootstrap" {
  role       = aws_iam_role.worker.name
  policy_arn = aws_iam_policy.node_bootstrap.arn
}

# Names match IamInstanceProfile in cluster/aws.yaml.
resource "aws_iam_instance_profile" "head" {
  name = "persona-gen-ray-head"
  role = aws_iam_role.head.name
}

resource "aws_iam_instance_profile" "worker" {
  name = "persona-gen-ray-worker"
  role = aws_iam_role.worker.name
}

# KubeRay on EKS: the persona-gen-ray service account assumes this role (IRSA).
data "aws_iam_policy_document" "irsa_assume" {
  count = var.eks_oidc_provider_arn == "" ? 0 : 1
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${element(split("oidc-provider/", var.eks_oidc_provider_arn), 1)}:sub"
      values   = ["system:serviceaccount:${var.eks_namespace}:persona-gen-ray"]
    }
    condition {
      test     = "StringEquals"
      variable = "${element(split("oidc-provider/", var.eks_oidc_provider_arn), 1)}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "irsa" {
  count              = var.eks_oidc_provider_arn == "" ? 0 : 1
  name               = "persona-gen-ray-irsa"
  assume_role_policy = data.aws_iam_policy_document.irsa_assume[0].json
}

resource "aws_iam_role_policy_attachment" "irsa_runs" {
  count      = var.eks_oidc_provider_arn == "" ? 0 : 1
  role       = aws_iam_role.irsa[0].name
  policy_arn = aws_iam_policy.runs_access.arn
}
