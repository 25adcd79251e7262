"""Kubernetes side: workloads and AdmissionReviews into subjects, admission decisions."""
