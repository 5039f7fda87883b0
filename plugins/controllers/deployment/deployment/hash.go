package deployment

import "github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"

// TemplateHash is the pod-template-hash of a pod template (kube.TemplateHash).
func TemplateHash(template []byte, collisionCount *int32) string {
	return kube.TemplateHash(template, collisionCount)
}
