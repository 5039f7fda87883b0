package cronjob

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed cron schedule: the standard five fields (minute,
// hour, day of month, month, day of week, with lists, ranges, steps, '?'
// and month/day names), a macro (@yearly, @annually, @monthly, @weekly,
// @daily, @midnight, @hourly) or @every <duration>, as Kubernetes'
// robfig/cron parser accepts them.
type Schedule struct {
	minute, hour, dom, month, dow uint64
	domStar, dowStar              bool
	every                         time.Duration
}

// ErrBadSchedule: a schedule the parser rejects.
var ErrBadSchedule = errors.New("invalid cron schedule")

var macros = map[string]string{
	"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
	"@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}

var monthNames = map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8,
	"sep": 9, "oct": 10, "nov": 11, "dec": 12}

var dayNames = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

// ParseSchedule parses a schedule.
func ParseSchedule(spec string) (Schedule, error) {
	spec = strings.TrimSpace(spec)
	if d, ok := strings.CutPrefix(spec, "@every "); ok {
		dur, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil || dur < time.Second {
			return Schedule{}, errors.Join(ErrBadSchedule, errors.New("@every needs a duration of at least 1s: "+d))
		}
		return Schedule{every: dur}, nil
	}
	if m, ok := macros[spec]; ok {
		spec = m
	}
	f := strings.Fields(spec)
	if len(f) != 5 {
		return Schedule{}, errors.Join(ErrBadSchedule, errors.New("expected 5 fields, found "+strconv.Itoa(len(f))+": "+spec))
	}
	var s Schedule
	var err error
	if s.minute, _, err = parseField(f[0], 0, 59, nil); err != nil {
		return s, err
	}
	if s.hour, _, err = parseField(f[1], 0, 23, nil); err != nil {
		return s, err
	}
	if s.dom, s.domStar, err = parseField(f[2], 1, 31, nil); err != nil {
		return s, err
	}
	if s.month, _, err = parseField(f[3], 1, 12, monthNames); err != nil {
		return s, err
	}
	if s.dow, s.dowStar, err = parseField(f[4], 0, 7, dayNames); err != nil {
		return s, err
	}
	if s.dow&(1<<7) != 0 { // 7 is Sunday too
		s.dow |= 1
	}
	return s, nil
}

// parseField parses a comma-separated list of '*', '?', n, a-b, with an
// optional /step, into a bit set; star reports a field of only '*' or '?'.
func parseField(field string, lo, hi int, names map[string]int) (bits uint64, star bool, err error) {
	bad := func(why string) error { return errors.Join(ErrBadSchedule, errors.New(why+": "+field)) }
	star = field == "*" || field == "?"
	for part := range strings.SplitSeq(field, ",") {
		rng, stepStr, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n <= 0 {
				return 0, false, bad("bad step")
			}
			step = n
		}
		var from, to int
		switch {
		case rng == "*" || rng == "?":
			from, to = lo, hi
		default:
			a, b, isRange := strings.Cut(rng, "-")
			if from, err = value(a, names); err != nil {
				return 0, false, bad("bad value")
			}
			to = from
			if isRange {
				if to, err = value(b, names); err != nil {
					return 0, false, bad("bad value")
				}
			} else if hasStep {
				to = hi
			}
		}
		if from < lo || to > hi || from > to {
			return 0, false, bad("value out of range")
		}
		for v := from; v <= to; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, star, nil
}

func value(s string, names map[string]int) (int, error) {
	if v, ok := names[strings.ToLower(s)]; ok {
		return v, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, ErrBadSchedule
	}
	return n, nil
}

// Next returns the first activation strictly after t, in t's location;
// the zero time if there is none within five years (e.g. "0 0 30 2 *").
func (s Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		return t.Add(s.every - time.Duration(t.Nanosecond())).Truncate(time.Second)
	}
	loc := t.Location()
	t = t.Add(time.Minute - time.Duration(t.Second())*time.Second - time.Duration(t.Nanosecond()))
	limit := t.Year() + 5
	for t.Year() <= limit {
		if s.month&(1<<uint(t.Month())) == 0 {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, loc)
			continue
		}
		if !s.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
			continue
		}
		if s.hour&(1<<uint(t.Hour())) == 0 {
			next := time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, loc)
			if !next.After(t) { // a DST transition repeats the hour
				next = t.Add(time.Hour).Truncate(time.Hour)
			}
			t = next
			continue
		}
		if s.minute&(1<<uint(t.Minute())) == 0 {
			t = t.Add(time.Minute)
			continue
		}
		return t
	}
	return time.Time{}
}

// dayMatches: day of month and day of week; when both are restricted
// either may match (cron's rule), else both must.
func (s Schedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<uint(t.Day())) != 0
	dow := s.dow&(1<<uint(t.Weekday())) != 0
	if s.domStar || s.dowStar {
		return dom && dow
	}
	return dom || dow
}
