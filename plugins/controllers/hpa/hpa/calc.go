package hpa

import (
	"math"
	"strconv"
	"strings"
)

// ParseMilli parses a resource quantity ("250m", "1.5", "2", "512Mi",
// metrics-server's nanocores "1234567n")
// into thousandths of its unit; ok is false for a malformed one.
func ParseMilli(q string) (int64, bool) {
	q = strings.TrimSpace(q)
	mult := 1000.0
	for _, s := range []struct {
		suffix string
		m      float64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50}, {"Ei", 1 << 60},
		{"n", 1e-6}, {"u", 1e-3}, {"m", 1}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {"E", 1e18},
	} {
		if n, found := strings.CutSuffix(q, s.suffix); found {
			q = n
			if s.m <= 1 {
				mult = s.m
			} else {
				mult = 1000 * s.m
			}
			break
		}
	}
	f, err := strconv.ParseFloat(q, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return int64(math.Ceil(f * mult)), true
}

// FormatMilli renders thousandths as a quantity ("250m", "2").
func FormatMilli(m int64) string {
	if m%1000 == 0 {
		return strconv.FormatInt(m/1000, 10)
	}
	return strconv.FormatInt(m, 10) + "m"
}

// podMetric is one pod's usage and request of the metric's resource.
type podMetric struct {
	usage, request int64 // milli-units
	hasUsage       bool
	ready          bool
}

// Target is a resource metric's target: average utilisation of the
// request (percent) or average value per pod (milli-units).
type Target struct {
	Utilization  int64
	AverageValue int64
}

// Calculation is the outcome of Kubernetes' replica calculation for one
// resource metric.
type Calculation struct {
	Replicas int64
	// Utilization (percent of the request) and AverageValue
	// (milli-units), over the ready pods with metrics.
	Utilization, AverageValue int64
}

// Replicas is Kubernetes' GetResourceReplicas (and the AverageValue
// variant): pods without metrics count as using their full request when
// scaling down and nothing when scaling up, unready pods as nothing when
// scaling up; within tolerance of the target, current stays.
func Replicas(current int64, pods []podMetric, t Target, tolerance float64) (Calculation, bool) {
	var usage, request, withMetrics int64
	var missing, unready []podMetric
	for _, p := range pods {
		switch {
		case !p.hasUsage:
			missing = append(missing, p)
		case !p.ready:
			unready = append(unready, p)
		default:
			usage += p.usage
			request += p.request
			withMetrics++
		}
	}
	if withMetrics == 0 {
		return Calculation{}, false
	}
	ratio := func(usage, request, n int64) float64 {
		if t.Utilization > 0 {
			if request == 0 {
				return 0
			}
			return float64(usage) * 100 / float64(request) / float64(t.Utilization)
		}
		return float64(usage) / float64(n) / float64(t.AverageValue)
	}
	calc := Calculation{AverageValue: usage / withMetrics}
	if request > 0 {
		calc.Utilization = usage * 100 / request
	}
	if t.Utilization > 0 && request == 0 {
		return calc, false
	}
	r := ratio(usage, request, withMetrics)
	if len(missing) == 0 && len(unready) == 0 {
		if math.Abs(1-r) <= tolerance {
			calc.Replicas = current
			return calc, true
		}
		calc.Replicas = int64(math.Ceil(r * float64(withMetrics)))
		return calc, true
	}
	n := withMetrics
	for _, p := range missing {
		if r < 1 {
			usage += p.request // full use when scaling down
			if t.Utilization == 0 {
				usage += t.AverageValue - p.request
			}
		}
		request += p.request
		n++
	}
	if r > 1 {
		for _, p := range unready {
			request += p.request
			n++
		}
	}
	nr := ratio(usage, request, n)
	if math.Abs(1-nr) <= tolerance || (r < 1 && nr > 1) || (r > 1 && nr < 1) {
		calc.Replicas = current
		return calc, true
	}
	calc.Replicas = int64(math.Ceil(nr * float64(n)))
	return calc, true
}
