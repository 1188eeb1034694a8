package gateway

import "strings"

// aclRights returns the rights that identity has under a Cyrus ACL string
// ("id\trights\tid\trights\t..."), evaluated as Cyrus's cyrus_acl_myrights
// does: the union of the rights of every entry that names the identity or
// "anyone", minus the union of every negative entry ("-id") that does.
// "anonymous" entries apply only to anonymous sessions, which the gateway
// does not offer. Group entries ("group:staff") would need the site's group
// database, which the gateway does not have: they grant nothing here, so
// a mailbox shared only with a group is not listed (the backend still
// enforces the group when the member names the mailbox).
func aclRights(acl, identity string) string {
	var pos, neg string
	f := strings.Split(acl, "\t")
	for i := 0; i+1 < len(f); i += 2 {
		id, rights := f[i], f[i+1]
		negative := strings.HasPrefix(id, "-")
		id = strings.TrimPrefix(id, "-")
		if id != identity && id != "anyone" {
			continue
		}
		if negative {
			neg += rights
		} else {
			pos += rights
		}
	}
	if neg == "" {
		return pos
	}
	var out strings.Builder
	for _, r := range pos {
		if !strings.ContainsRune(neg, r) && !strings.ContainsRune(out.String(), r) {
			out.WriteRune(r)
		}
	}
	return out.String()
}

// implicitOwnerRights are the rights Cyrus gives a user on their own
// mailboxes regardless of the ACL (implicit_owner_rights, "lkxan" by
// default): a user always sees their own folders.
const implicitOwnerRights = "lkxan"

// mayLookup reports whether user (whose INBOX is inbox) sees the mailbox
// internal with the given ACL in LIST: the 'l' right.
func mayLookup(identity, inbox, internal, acl string) bool {
	if owner(internal) == inbox {
		return true
	}
	return strings.ContainsRune(aclRights(acl, identity), 'l')
}
