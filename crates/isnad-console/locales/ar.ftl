app-name = وحدة تحكم إسناد
skip-to-content = انتقل إلى المحتوى
nav-main = القائمة الرئيسية
nav-dashboard = لوحة المتابعة
nav-inbox = الوارد
nav-outbox = الصادر
nav-logout = تسجيل الخروج
signed-in-as = المستخدم { $user } ({ $role })
role-officer = ضابط
role-supervisor = مشرف
role-operator = مشغّل
role-auditor = مدقق
lang-label = اللغة
lang-ar = العربية
lang-en = English
lang-fr = Français
lang-save = تغيير اللغة
login-title = تسجيل الدخول
login-user = اسم المستخدم
login-password = كلمة المرور
login-totp = رمز لمرة واحدة (6 أرقام)
login-submit = دخول
login-failed = اسم المستخدم أو كلمة المرور أو الرمز غير صحيح.
login-locked = محاولات فاشلة كثيرة. حاول لاحقاً أو اطلب من المشغّل إعادة تعيين حسابك.
logout-done = تم تسجيل خروجك.
dash-title = لوحة المتابعة
dash-node = العقدة { $agency }
dash-status = الحالة
status-ok = تعمل بشكل طبيعي
status-degraded = متدهورة: لا تقبل عملاً جديداً
dash-reasons = الإنذارات
dash-no-alarms = لا توجد إنذارات.
dash-queues = الطوابير
dash-pending = { $count ->
    [zero] لا توجد رسائل بانتظار التسليم
    [one] رسالة واحدة بانتظار التسليم
    [two] رسالتان بانتظار التسليم
    [few] { $count } رسائل بانتظار التسليم
    [many] { $count } رسالة بانتظار التسليم
   *[other] { $count } رسالة بانتظار التسليم
}
dash-partners = الشركاء الذين لديهم رسائل في الانتظار
dash-partners-none = لا يوجد شريك لديه رسائل في الانتظار.
dash-partner-failing = فشلت المحاولة الأخيرة
dash-partner-trying = بانتظار المحاولة التالية
dash-checkpoint = آخر نقطة تحقق
dash-checkpoint-none = لم تُوقَّع أي نقطة تحقق بعد.
dash-checkpoint-size = { $size ->
    [zero] لا مدخلات
    [one] مدخل واحد
    [two] مدخلان
    [few] { $size } مدخلات
    [many] { $size } مدخلاً
   *[other] { $size } مدخل
}
dash-cosigned = { $count ->
    [0] لم يوقّعها أي شاهد
    [one] وقّعها شاهد واحد من { $total } (النصاب { $quorum })
    [two] وقّعها شاهدان من { $total } (النصاب { $quorum })
   *[other] وقّعها { $count } شهود من { $total } (النصاب { $quorum })
}
inbox-title = الوارد
outbox-title = الصادر
col-id = الرسالة
col-from = المرسل
col-to = المستلم
col-kind = النوع
col-subject = الموضوع
inbox-purged = (حُذف المحتوى وفق قواعد الاحتفاظ)
col-received = وقت الاستلام (UTC)
col-created = وقت الإنشاء (UTC)
col-state = الحالة
list-empty = لا توجد رسائل.
page-next = الصفحة التالية
page-first = الصفحة الأولى
err-forbidden-title = غير مسموح
err-forbidden = لا يسمح دورك بفتح هذه الصفحة.
err-csrf-title = انتهت صلاحية النموذج
err-csrf = لم يُقبل النموذج (رمز الأمان مفقود أو قديم). افتح الصفحة مجدداً وأعد المحاولة.
err-not-found-title = غير موجود
err-not-found = هذه الصفحة غير موجودة.
err-unavailable-title = غير متاح
err-unavailable = تعذّر على العقدة الرد. حاول مجدداً، وإن استمر ذلك فأبلغ المشغّل.
